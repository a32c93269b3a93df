"""``{% rchat_languages as languages %}``: what the language switch offers."""

from django import template
from django.conf import settings
from django.utils.translation import get_language_info

register = template.Library()

LOCALE_MIDDLEWARE = "django.middleware.locale.LocaleMiddleware"


@register.simple_tag
def rchat_languages():
    """settings.LANGUAGES, each as Django's language info (``code``, ``name_local``…);
    empty when there is nothing to switch: one language, or no LocaleMiddleware to act
    on the choice (check rchat.W008)."""
    if LOCALE_MIDDLEWARE not in settings.MIDDLEWARE or len(settings.LANGUAGES) < 2:
        return []
    return [get_language_info(code) | {"code": code} for code, _name in settings.LANGUAGES]
