"""Errors raised by rchat.

``RChatError`` is the root of everything a caller may want to handle. Configuration
errors subclass Django's ``ImproperlyConfigured`` and sit outside that tree, so an
``except RChatError`` can never swallow a broken setup.
"""

from django.core.exceptions import ImproperlyConfigured


class RChatConfigurationError(ImproperlyConfigured):
    """rchat's settings are missing or wrong; the message names the setting."""


class RChatError(Exception):
    """Base of the errors rchat raises at run time."""


class DecryptionError(RChatError):
    """A stored secret could not be decrypted with any key in RCHAT["ENCRYPTION_KEYS"]."""


class InvalidMessage(RChatError, ValueError):
    """An outbound message failed validation; ``errors`` maps field to reason."""

    def __init__(self, message, *, errors=None):
        super().__init__(message)
        self.errors = errors or {}


# --- Errors from talking to R-Chat ---------------------------------------------------


class RChatAPIError(RChatError):
    """R-Chat could not be reached or refused the call.

    ``status`` is the HTTP status (None when no answer came) and ``body`` the start
    of R-Chat's answer, with secrets masked. ``kind`` says what went wrong in one word,
    whatever the language of the message: one of ``rchat.models.ErrorKind``, stored
    with a credential's last error so admin can explain it.
    """

    #: Whether trying again later may succeed.
    transient = False
    kind = "rejected"

    def __init__(self, message, *, status=None, body="", kind=None):
        super().__init__(message)
        self.status = status
        self.body = body
        if kind:
            self.kind = kind


class RChatAuthError(RChatAPIError):
    """R-Chat refused the Chatday-Token (401/403): the credential needs attention."""

    kind = "auth"


class RChatRejectedError(RChatAPIError):
    """R-Chat refused the request itself (another 4xx); sending it again won't help."""


class RChatRateLimitedError(RChatAPIError):
    """R-Chat asked us to slow down (429); ``retry_after`` is in seconds."""

    transient = True
    kind = "rate_limited"

    def __init__(self, message, *, retry_after=None, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class RChatUnavailableError(RChatAPIError):
    """R-Chat answered 5xx, timed out, or the connection failed; worth retrying."""

    transient = True
    kind = "server"


class RChatResponseError(RChatAPIError):
    """R-Chat answered 2xx but not in a shape rchat can read."""

    kind = "response"
