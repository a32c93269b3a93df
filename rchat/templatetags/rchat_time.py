"""``{% load rchat_time %}``: rchat's way of showing dates and times (rchat.ui.when).

Each filter gives text, for inside a ``<time datetime="{{ value|date:'c' }}">`` that the
template writes itself:

- ``|rchat_when``: a time in a list ("14:05", "Yesterday 14:05", "3 Dec 14:05",
  "3 Dec 2025");
- ``|rchat_clock``: a message bubble's time ("14:05");
- ``|rchat_day``: a day divider ("Today", "Yesterday", "3 December 2025");
- ``|rchat_date``: the date in full ("3 December 2025");
- ``|rchat_full``: the full date and time, for a ``title`` ("3 December 2025 14:05:09");
- ``|rchat_day_label``: a day in a chart or a table ("3 Dec"; ``:"weekday"``: "Thu 3 Dec").

As Django's ``date`` filter does, they show nothing for an empty value or anything that
is not a date: a template never fails on it.
"""

import datetime

from django import template

from ..ui import when

register = template.Library()


def _is_date(value):
    # datetime.datetime is a date too.
    return isinstance(value, datetime.date)


@register.filter
def rchat_when(value):
    """A time in a list: ``when.when_text``."""
    return when.when_text(value) if _is_date(value) else ""


@register.filter
def rchat_clock(value):
    """A message bubble's time: ``when.clock_text``."""
    return when.clock_text(value) if _is_date(value) else ""


@register.filter
def rchat_day(value):
    """A day divider: ``when.day_text``."""
    return when.day_text(value) if _is_date(value) else ""


@register.filter
def rchat_date(value):
    """The date in full: ``when.date_text``."""
    return when.date_text(value) if _is_date(value) else ""


@register.filter
def rchat_full(value):
    """The full date and time: ``when.full_text``."""
    return when.full_text(value) if _is_date(value) else ""


@register.filter
def rchat_day_label(value, arg=""):
    """A day's short label: ``when.day_label`` (``"weekday"`` adds the weekday)."""
    return when.day_label(value, weekday=arg == "weekday") if _is_date(value) else ""
