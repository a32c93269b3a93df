"""Forms of the agent inbox: the room list's filters and the private note (the reply
box is ``ui.reply``)."""

from django import forms
from django.utils.translation import gettext_lazy as _

from .selectors import ROOM_STATUSES, ROOM_VIEWS


class RoomFilterForm(forms.Form):
    """The inbox's tab, status filter and search box (all optional, GET)."""

    view = forms.ChoiceField(
        label=_("Show"),
        required=False,
        choices=[("mine", _("Mine")), ("unassigned", _("Unassigned")), ("all", _("All"))],
    )
    status = forms.ChoiceField(
        label=_("Status"),
        required=False,
        choices=[("open", _("Open")), ("closed", _("Closed")), ("all", _("All"))],
    )
    q = forms.CharField(
        label=_("Search"),
        required=False,
        max_length=200,
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": _("Chat id, name or message text")}
        ),
    )

    def filters(self):
        """The filters in force: the valid ones given, defaults for the rest."""
        data = self.cleaned_data if self.is_valid() else {}
        view = data.get("view") or "all"
        status = data.get("status") or "open"
        return {
            "view": view if view in ROOM_VIEWS else "all",
            "status": status if status in ROOM_STATUSES else "open",
            "q": (data.get("q") or "").strip(),
        }


class NoteForm(forms.Form):
    """A private note to add to a conversation (inbox and admin).

    The field checks nothing itself: ``services.note_add`` does (empty, too long), so
    the reasons are the same in the inbox, admin and the API, and the text comes back
    as typed with the reason next to it.
    """

    body = forms.CharField(
        label=_("Private note"),
        required=False,
        strip=False,
        widget=forms.Textarea(
            attrs={
                "rows": 2,
                "placeholder": _("Only your colleagues see this. @username mentions one."),
            }
        ),
    )
