"""The Content-Security-Policy header on Django 5.2, which has none of its own.

Django 6.0 and later send it with ``django.middleware.csp.ContentSecurityPolicyMiddleware``
from ``settings.SECURE_CSP``; project/settings.py uses that one when it exists. This
middleware reads the same setting and writes the same header, so the policy is
written once for every Django the project runs on.
"""

from django.conf import settings

HEADER = "Content-Security-Policy"


def build_policy(policy):
    """``{"script-src": ["'self'"], ...}`` as ``"script-src 'self'; ..."``.

    A directive whose value is True is written alone (``upgrade-insecure-requests``);
    one whose value is empty, False or None is left out.
    """
    parts = []
    for directive, value in policy.items():
        if value is True:
            parts.append(directive)
        elif value:
            sources = [value] if isinstance(value, str) else list(value)
            parts.append(" ".join([directive, *sources]))
    return "; ".join(parts)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.header = build_policy(getattr(settings, "SECURE_CSP", {}))

    def __call__(self, request):
        response = self.get_response(request)
        # A view that sets its own policy keeps it.
        if self.header and HEADER not in response:
            response[HEADER] = self.header
        return response
