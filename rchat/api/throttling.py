"""Per-user rate limits for the API, configured in ``RCHAT["API_THROTTLE_RATES"]``."""

from django.core.cache import caches
from rest_framework.permissions import SAFE_METHODS
from rest_framework.settings import api_settings
from rest_framework.throttling import UserRateThrottle

from ..conf import get_setting


class _RChatThrottle(UserRateThrottle):
    """A UserRateThrottle whose rate needs no change to the host's REST_FRAMEWORK.

    The rate is ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][scope]`` when the site sets
    it, else ``RCHAT["API_THROTTLE_RATES"][key]``; ``None`` there turns it off.
    """

    rate_key = ""

    @property
    def cache(self):
        # Read at call time: RCHAT["THROTTLE_CACHE"] names a cache every process shares.
        return caches[get_setting("THROTTLE_CACHE")]

    def get_rate(self):
        site_rates = api_settings.DEFAULT_THROTTLE_RATES or {}
        if self.scope in site_rates:
            return site_rates[self.scope]
        return (get_setting("API_THROTTLE_RATES") or {}).get(self.rate_key)


class RChatUserThrottle(_RChatThrottle):
    """Every API call of a user counts here."""

    scope = "rchat"
    rate_key = "user"


class RChatWriteThrottle(_RChatThrottle):
    """Only calls that change something (send, retry, assign, close, reopen, take over,
    hand over, return to the bot) count here."""

    scope = "rchat_write"
    rate_key = "write"

    def allow_request(self, request, view):
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)
