"""A stand-in for R-Chat that runs on this machine: for development, the demo and tests.

``python manage.py rchat_sandbox`` runs it as a server; in Python::

    from rchat.sandbox import Sandbox

    with Sandbox(port=0, webhook_url="http://127.0.0.1:8000/rchat/webhook/") as sb:
        sb.send_as_user("chat-1", "สวัสดีครับ")   # the site receives a webhook
        sb.received("chat-1")                     # what the site sent back

It needs only the standard library at run time. See docs/sandbox.md.
"""

from .client import SandboxClient
from .server import Sandbox, chat_url, send_body_problem
from .state import DEFAULT_SECRET, DEMO_TOKEN, SandboxInputError, signature_for

__all__ = [
    "DEFAULT_SECRET",
    "DEMO_TOKEN",
    "Sandbox",
    "SandboxClient",
    "SandboxInputError",
    "chat_url",
    "send_body_problem",
    "signature_for",
]
