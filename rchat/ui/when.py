"""How rchat shows a date or a time: one set of rules for the inbox, admin and the overview.

Every page of rchat that shows when something happened asks this module (in templates
through ``{% load rchat_time %}``; admin's date-time columns and read-only fields through
``WhenFieldsAdmin``), so a time reads the same in a room list, a bubble, a note and an
admin column. The rules (docs/inbox.md, "Dates and times"):

- In the current time zone (``timezone.localtime``): the site's ``TIME_ZONE`` unless a
  view activated another one. "Today" is today there, not in UTC: in Bangkok a message
  written at 23:30 on 2 December is shown on the 2nd, although it is the 2nd 16:30 UTC.
- A time in a list (rooms, notes, mentions, search results, admin's columns), ``when``:
  today "14:05", yesterday "Yesterday 14:05", earlier this year "3 Dec 14:05", before
  this year "3 Dec 2025" (the date only: that far back the hour does not matter).
- A message bubble, ``clock``: always its time, "14:05"; the day divider above it says
  the day, ``day``: "Today", "Yesterday", else the date in full, "3 December 2025".
- The full date and time, ``full``: "3 December 2025 14:05:09", in the element's
  ``title``; ``<time datetime>`` carries the ISO 8601 value for machines.
- Localised by the active language: month names come from Django's translations
  ("ธ.ค.", "ธันวาคม" in Thai), the words from rchat's catalogue. In Thai a year is
  written in the Buddhist era (พ.ศ.), as Thai readers expect of a Thai page: 2569 for
  2026 (Gregorian + 543). Django's Thai formats write the Gregorian year, so this
  module puts the year in itself. The ISO value stays Gregorian.

The patterns are Django date-format strings; day before month in both languages, as
Thai and British English write dates, and a 24-hour clock.
"""

import datetime
import functools

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.translation import get_language, gettext

#: Django date-format patterns for each way a time is shown. ``Y`` (the year) is
#: written by ``_format``, in the Buddhist era for Thai.
CLOCK = "H:i"
THIS_YEAR = "j M H:i"
OLDER = "j M Y"
DATE = "j F Y"
FULL = "j F Y H:i:s"
DAY_LABEL = "j M"
DAY_LABEL_WEEKDAY = "D j M"

#: Years between the Gregorian and the Buddhist era (2026 is 2569 B.E.).
BUDDHIST_ERA_OFFSET = 543
#: Languages whose readers count years in the Buddhist era.
BUDDHIST_ERA_LANGUAGES = ("th",)


def buddhist_era():
    """Whether the active language writes years in the Buddhist era (Thai)."""
    language = (get_language() or "").lower()
    return any(
        language == code or language.startswith(code + "-") for code in BUDDHIST_ERA_LANGUAGES
    )


def local(value):
    """``value`` as shown: an aware datetime in the current time zone, a naive one (a
    site with ``USE_TZ = False``) or a date as it is. Anything else is a TypeError."""
    if isinstance(value, datetime.datetime):
        return timezone.localtime(value) if timezone.is_aware(value) else value
    if isinstance(value, datetime.date):
        return value
    raise TypeError(f"rchat.ui.when expects a date or a datetime, not {type(value).__name__}.")


def _format(value, pattern):
    """``date_format`` with the year in the era the language reads."""
    if "Y" in pattern and buddhist_era():
        # Each digit escaped, so that the year is written as it is, not read as format
        # characters.
        year = "".join("\\" + digit for digit in str(value.year + BUDDHIST_ERA_OFFSET))
        pattern = pattern.replace("Y", year)
    return date_format(value, pattern)


def _today(now):
    return local(now if now is not None else timezone.now())


def _day(value):
    return value.date() if isinstance(value, datetime.datetime) else value


def when_text(value, *, now=None):
    """A time in a list: "14:05", "Yesterday 14:05", "3 Dec 14:05" or "3 Dec 2025".
    ``now`` (default: this moment) says what today is."""
    shown = local(value)
    today = _day(_today(now))
    day = _day(shown)
    if not isinstance(shown, datetime.datetime):
        return _format(shown, DAY_LABEL if day.year == today.year else OLDER)
    if day == today:
        return _format(shown, CLOCK)
    if day == today - datetime.timedelta(days=1):
        return gettext("Yesterday %(time)s") % {"time": _format(shown, CLOCK)}
    return _format(shown, THIS_YEAR if day.year == today.year else OLDER)


def clock_text(value):
    """A message bubble's time, whatever the day: "14:05"."""
    return _format(local(value), CLOCK)


def day_text(value, *, now=None):
    """A day divider: "Today", "Yesterday", else the date: "3 December 2025"."""
    day = _day(local(value))
    today = _day(_today(now))
    if day == today:
        return gettext("Today")
    if day == today - datetime.timedelta(days=1):
        return gettext("Yesterday")
    return _format(day, DATE)


def date_text(value):
    """The date in full: "3 December 2025"."""
    return _format(_day(local(value)), DATE)


def full_text(value):
    """The full date and time (an element's title): "3 December 2025 14:05:09"; a date
    alone in full."""
    shown = local(value)
    return _format(shown, FULL if isinstance(shown, datetime.datetime) else DATE)


def day_label(value, *, weekday=False):
    """A short label for a day in a chart or a table of days: "3 Dec" ("Thu 3 Dec")."""
    return _format(_day(local(value)), DAY_LABEL_WEEKDAY if weekday else DAY_LABEL)


def iso(value):
    """The machine-readable value of ``<time datetime>``: ISO 8601 in the current zone."""
    return local(value).isoformat()


def when_html(value, *, now=None):
    """``<time datetime="ISO" title="full">when</time>``: a list's or a column's time."""
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        iso(value),
        full_text(value),
        when_text(value, now=now),
    )


# --- Django admin ----------------------------------------------------------------------


class WhenField:
    """A date-time field of a model as admin shows it, in a list column or as a
    read-only field: ``when_html`` of its value (admin's "-" when empty), sorted by the
    field. Admin takes it where it takes a callable; it is named like the field, so the
    column keeps its CSS class (``column-<name>``, ``field-<name>``)."""

    def __init__(self, field):
        self.__name__ = field.name
        self.short_description = field.verbose_name
        self.admin_order_field = field.name

    def __call__(self, obj):
        value = getattr(obj, self.__name__)
        return None if value is None else when_html(value)

    def __str__(self):
        # Admin's tabular inlines put a read-only field's name in a CSS class.
        return self.__name__

    __repr__ = __str__


@functools.cache
def when_field(model, name):
    """The ``WhenField`` of ``model``'s field ``name``: one object per field, so that
    admin finds it in read-only fields and fieldsets alike."""
    return WhenField(model._meta.get_field(name))


class WhenFieldsAdmin:
    """A ModelAdmin (or inline) mix-in: every date-time field it shows but does not let
    one edit, in the list's columns or read-only on the change page, is shown by
    ``when_html``, the way the inbox shows times. Editable fields keep their inputs.

    Admin's own formatting (``display_for_field``: "Dec. 2, 2026, 11:21 a.m.") has no
    hook per admin, so the fields' names are swapped for ``WhenField`` callables in
    what the admin hands Django: its list display, read-only fields and fieldsets.
    """

    def _when(self, name):
        if isinstance(name, str):
            try:
                field = self.model._meta.get_field(name)
            except FieldDoesNotExist:  # a method, a property, "__str__": not a field
                return name
            if isinstance(field, models.DateTimeField):
                return when_field(self.model, name)
        return name

    def get_list_display(self, request):
        return [self._when(name) for name in super().get_list_display(request)]

    def get_readonly_fields(self, request, obj=None):
        return [self._when(name) for name in super().get_readonly_fields(request, obj)]

    def get_fieldsets(self, request, obj=None):
        # A field shown read-only here is one of the read-only fields, or any field
        # when the user may only view the object (admin then shows every field so).
        view_only = obj is not None and not self.has_change_permission(request, obj)
        readonly = set(self.get_readonly_fields(request, obj))

        def swap(name):
            if isinstance(name, (list, tuple)):
                return type(name)(swap(item) for item in name)
            shown = self._when(name)
            return shown if shown is not name and (view_only or shown in readonly) else name

        return [
            (title, {**options, "fields": swap(options.get("fields", ()))})
            for title, options in super().get_fieldsets(request, obj)
        ]
