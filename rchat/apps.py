from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RChatConfig(AppConfig):
    name = "rchat"
    verbose_name = _("R-Chat")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Imported for their side effects: system checks register themselves, and
        # the credential cache listens for changes to Credential rows.
        from . import checks, selectors, signals  # noqa: F401
        from .compat import kombu_redis_released_channel

        # Celery workers on Redis ride out a broker restart (see the function's docstring).
        kombu_redis_released_channel()
