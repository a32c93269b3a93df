"""The chatbot back-office: the Bot class sites subclass, the rules staff edit in admin,
business hours, and forwarding to a bot that lives elsewhere (docs/bots.md)."""

from .base import Bot, HandOver, Reply

__all__ = ["Bot", "HandOver", "Reply"]
