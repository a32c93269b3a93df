# ruff: noqa: RUF001 - Django's msgids have typographic apostrophes, matched exactly.
"""Django admin's own strings that Django's catalogues leave in English in some languages
(Thai among them), supplied by rchat's catalogue.

Django builds one catalogue from every installed app: a string Django's Thai lacks
altogether ("Show counts") takes rchat's Thai whatever the order of INSTALLED_APPS; one
that Django translated only in part ("เปิด/ปิด sorting") takes rchat's only when rchat is
listed above ``django.contrib.admin`` (an app listed earlier wins; LOCALE_PATHS win over
every app). The strings are listed here so that ``makemessages`` keeps them in rchat's
catalogue, where the translator fills them in (docs/admin.md, "Thai").

Admin's scripts take their strings from admin's own JavaScript catalogue, which reads
admin's files alone: :class:`AdminJavaScriptCatalog` adds rchat's Thai for the ones
listed in ``JS_STRINGS`` and ``JS_PLURALS``, and every rchat admin page loads it after
admin's (``RChatAdmin.media``).
"""

from django.utils.translation import gettext, gettext_noop, ngettext, trans_real
from django.views.i18n import JavaScriptCatalog

# Admin's templates and Python code (the "django" domain).
STRINGS = [
    # Django 6's admin and forms.
    gettext_noop("Run"),
    gettext_noop("Pagination %(name)s"),
    gettext_noop("Pagination %(name)s entries"),
    gettext_noop("Search %(name)s"),
    gettext_noop("Filter by %(field_name)s"),
    gettext_noop("- Select an option -"),
    gettext_noop("Skip to main content"),
    gettext_noop("Breadcrumbs"),
    gettext_noop("Sidebar"),
    gettext_noop("Toggle navigation"),
    gettext_noop("Start typing to filter…"),
    gettext_noop("Filter navigation items"),
    gettext_noop("Model name"),
    gettext_noop("Add link"),
    gettext_noop("Change or view list link"),
    gettext_noop("Toggle theme (current theme: auto)"),
    gettext_noop("Toggle theme (current theme: light)"),
    gettext_noop("Toggle theme (current theme: dark)"),
    gettext_noop("Show counts"),
    gettext_noop("Hide counts"),
    gettext_noop("Clear all filters"),
    gettext_noop("Empty"),
    gettext_noop("Not empty"),
    gettext_noop("Select all objects on this page for an action"),
    gettext_noop("Select this object for an action - {}"),
    gettext_noop("Toggle sorting"),
    gettext_noop("Remove from sorting"),
    gettext_noop("Sorting priority: %(priority_number)s"),
    gettext_noop("View selected %(model)s"),
    gettext_noop("Hold down “Control”, or “Command” on a Mac, to select more than one."),
    gettext_noop("Yes, I’m sure"),
    gettext_noop("Added:"),
    gettext_noop("Changed:"),
    gettext_noop("Deleted:"),
    gettext_noop("Error:"),
    gettext_noop("entry"),
    gettext_noop("The {name} “{obj}” was added successfully."),
    gettext_noop("The {name} “{obj}” was changed successfully."),
    gettext_noop("The {name} “{obj}” was changed successfully. You may edit it again below."),
    gettext_noop("The %(name)s “%(obj)s” was deleted successfully."),
    gettext_noop("%(name)s with ID “%(key)s” doesn’t exist. Perhaps it was deleted?"),
    gettext_noop("Added {name} “{object}”."),
    gettext_noop("Changed {fields} for {name} “{object}”."),
    gettext_noop("Deleted {name} “{object}”."),
    gettext_noop(
        "This object doesn’t have a change history. It probably wasn’t added via this admin site."
    ),
    gettext_noop("You don’t have permission to view or edit anything."),
    gettext_noop("We’re sorry, but the requested page could not be found."),
    gettext_noop("Forgotten your login credentials?"),
    gettext_noop("Set password"),
]

# Admin's scripts (its "djangojs" domain): the action counter, the two-box selector of
# labels, the calendar.
JS_STRINGS = [
    gettext_noop("Choose all %s"),
    gettext_noop("Choose selected %s"),
    gettext_noop("Remove selected %s"),
    gettext_noop("Remove all %s"),
    gettext_noop("Type into this box to filter down the list of selected %s."),
    gettext_noop('Choose %s by selecting them and then select the "Choose" arrow button.'),
    gettext_noop('Remove %s by selecting them and then select the "Remove" arrow button.'),
    gettext_noop("(click to clear)"),
    gettext_noop(
        "You have selected an action, but you haven’t saved your changes to individual "
        "fields yet. Please click OK to save. You’ll need to re-run the action."
    ),
    gettext_noop(
        "You have selected an action, and you haven’t made any changes on individual "
        "fields. You’re probably looking for the Go button rather than the Save button."
    ),
]
# (singular, plural) pairs; _plural_strings() shows them to makemessages.
JS_PLURALS = [
    ("%(sel)s of %(cnt)s selected", "%(sel)s of %(cnt)s selected"),
    ("%s selected option not visible", "%s selected options not visible"),
]


def _plural_strings():
    """Never called: makemessages finds plural entries only in ngettext calls."""
    ngettext("%(sel)s of %(cnt)s selected", "%(sel)s of %(cnt)s selected", 0)
    ngettext("%s selected option not visible", "%s selected options not visible", 0)


class AdminJavaScriptCatalog(JavaScriptCatalog):
    """Admin's script strings in the active language, from rchat's catalogue: only the
    ones it translates, so the rest stay as admin's own catalogue has them."""

    def get(self, request, *args, **kwargs):
        # The "django" domain with every app's catalogue, as the pages themselves use.
        self.translation = trans_real.translation(trans_real.get_language())
        return self.render_to_response(self.get_context_data(**kwargs))

    def get_catalog(self):
        catalog = {msgid: gettext(msgid) for msgid in JS_STRINGS if gettext(msgid) != msgid}
        for singular, _plural in JS_PLURALS:
            forms = [
                self.translation._catalog.get((singular, index))
                for index in range(self._num_plurals)
            ]
            if all(forms):
                catalog[singular] = forms
        return catalog
