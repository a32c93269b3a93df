"""What admin and the inbox show the same way: one renderer of messages."""
