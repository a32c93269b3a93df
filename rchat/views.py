"""The agent inbox: a room list and a conversation page, live through polling.

Every page works with JavaScript off (plain forms, redirect after POST). With it on,
htmx polls two partials every two seconds: the room list, and the thread, which
answers 204 (nothing to swap) while its version has not changed.

Seeing needs ``rchat.view_chatroom``; replying, retrying, assigning, closing,
reopening, taking a room over from the bot and returning it need
``rchat.reply_chatroom`` as well, checked again on every POST. Private notes follow the
same rule: reading them (and one's mentions) needs the first, writing one both.
"""

import json
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import (
    login_not_required,
    login_required,
    permission_required,
)
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpResponse, HttpResponseNotFound, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views import i18n
from django.views.decorators.http import (
    require_GET,
    require_http_methods,
    require_POST,
    require_safe,
)

from . import search, selectors, services
from .exceptions import InvalidMessage
from .forms import NoteForm, RoomFilterForm
from .models import ChatRoom, Message, Note
from .ui.messages import with_parts
from .ui.notes import note_body_html
from .ui.presence import presence_answer
from .ui.reply import ReplyForm, reply_send
from .ui.rooms import room_handler_parts

VIEW_PERMISSION = "rchat.view_chatroom"
REPLY_PERMISSION = "rchat.reply_chatroom"
ROOMS_PER_PAGE = 50
#: How many canned responses the reply box suggests for "/…".
CANNED_SUGGESTIONS = 10


def can_see(view_func):
    return login_required(permission_required(VIEW_PERMISSION, raise_exception=True)(view_func))


def can_reply(view_func):
    return login_required(
        permission_required([VIEW_PERMISSION, REPLY_PERMISSION], raise_exception=True)(view_func)
    )


# --- Helpers ---------------------------------------------------------------------------


class InboxFilterForm(RoomFilterForm):
    """The room list's filters with the bot: a "Bot" tab, and who handles the room."""

    view = forms.ChoiceField(
        label=gettext_lazy("Show"),
        required=False,
        choices=[
            ("mine", gettext_lazy("Mine")),
            ("unassigned", gettext_lazy("Unassigned")),
            ("bot", gettext_lazy("Bot")),
            ("all", gettext_lazy("All")),
        ],
    )
    handler = forms.ChoiceField(
        label=gettext_lazy("Handled by"),
        required=False,
        choices=[
            ("", gettext_lazy("Bot or people")),
            ("bot", gettext_lazy("Bot")),
            ("people", gettext_lazy("People")),
        ],
    )
    label = forms.CharField(label=gettext_lazy("Label"), required=False, max_length=50)

    def filters(self):
        filters = super().filters()  # its tabs know no "bot"
        data = self.cleaned_data if self.is_valid() else {}
        if data.get("view") in selectors.ROOM_VIEWS:
            filters["view"] = data["view"]
        handler = data.get("handler") or ""
        filters["handler"] = handler if handler in selectors.ROOM_HANDLERS else ""
        filters["label"] = (data.get("label") or "").strip()
        return filters


def _filters(request):
    return InboxFilterForm(request.GET).filters()


def _querystring(filters, **extra):
    """The list's filters as a query string, to carry them from page to page."""
    params = {key: value for key, value in {**filters, **extra}.items() if value}
    return urlencode(params)


def _room_list_context(request, filters, current=None):
    rooms = selectors.room_list(
        user=request.user,
        view=filters["view"],
        status=filters["status"],
        q=filters["q"],
        handler=filters["handler"],
        label=filters["label"],
    )
    page = Paginator(rooms, ROOMS_PER_PAGE).get_page(request.GET.get("page"))
    counts = selectors.room_counts(user=request.user)
    tab_labels = {
        "mine": _("Mine"),
        "unassigned": _("Unassigned"),
        "bot": _("Bot"),
        "all": _("All"),
    }
    status_labels = {"open": _("Open"), "closed": _("Closed"), "all": _("All")}
    handler_labels = {"": _("Bot or people"), "bot": _("Bot"), "people": _("People")}
    return {
        "filters": filters,
        "current_pk": current,
        "filter_form": InboxFilterForm(initial=filters),
        "querystring": _querystring(filters),
        "page_querystring": _querystring(filters, page=page.number if page.number > 1 else ""),
        "page": page,
        "rooms": page.object_list,
        "tabs": [
            {
                "key": key,
                "label": label,
                "open": counts[key]["open"],
                "unread": counts[key]["unread"],
                "querystring": _querystring({**filters, "view": key}),
            }
            for key, label in tab_labels.items()
        ],
        "statuses": [
            {"key": key, "label": label, "querystring": _querystring({**filters, "status": key})}
            for key, label in status_labels.items()
        ],
        "handlers": [{"key": key, "label": label} for key, label in handler_labels.items()],
        # The filter bar's choice of labels.
        "labels": list(selectors.label_list()),
        # The tabs' "@" badge: notes that mention the agent, not yet seen.
        "mentions_unseen": selectors.mention_unseen_count(user=request.user),
    }


def _thread_context(request, room, present=None):
    before = request.GET.get("before")
    before = int(before) if before and before.isdigit() else None
    thread, has_older = selectors.room_conversation(room=room, before=before)
    with_parts(thread)
    since_id = thread[0].pk if thread else 0
    if present is None:
        present = selectors.room_presence(room=room, user=request.user)
    return {
        "thread": thread,
        "has_older": has_older,
        "older_before": since_id,
        "paging_back": before is not None,
        "since_id": since_id,
        "version": _thread_version(room, since_id, present),
        "can_reply": request.user.has_perm(REPLY_PERMISSION),
        # Who else has the conversation open: in the version, so the thread is drawn
        # again when someone comes, goes or starts typing, not at every beat.
        "present": present,
        "handling": room_handler_parts(room),
        **_labels_context(room),
    }


def _thread_version(room, since_id, present):
    # The header says who handles the room: a hand-over (the bot's, or a colleague's
    # take-over) must reach an open page even when no message changed.
    since = room.handler_since.timestamp() if room.handler_since else 0
    version = selectors.room_thread_version(room=room, since_id=since_id)
    # And its labels: a colleague's change shows without a new message.
    labels = "-".join(str(label.pk) for label in room.labels.all())
    return f"{version}.{room.handler}.{since:.6f}.{labels}.{selectors.presence_version(present)}"


def _labels_context(room):
    """The room's labels, and the ones the header's form may add (the others)."""
    labels = list(room.labels.all())
    on_room = {label.pk for label in labels}
    return {
        "room_labels": labels,
        "label_choices": [label for label in selectors.label_list() if label.pk not in on_room],
    }


def _notes_context(request, room, form=None):
    """The conversation's notes panel: its latest notes drawn, and the note form."""
    notes, older = selectors.room_notes(room=room)
    for note in notes:
        note.body_html = note_body_html(note, viewer=request.user)
        note.can_delete = services.note_can_delete(note=note, user=request.user)
    action = reverse("rchat:inbox-note-add", kwargs={"pk": room.pk})
    query = _querystring(_filters(request))
    return {
        "notes": notes,
        "notes_older": older,
        "notes_limit": selectors.NOTES_LIMIT,
        "note_form": form or NoteForm(),
        "note_action": f"{action}?{query}" if query else action,
    }


def _canned_items(request, room, canned):
    """Canned responses as the reply box uses them: rendered for this room and agent."""
    items = []
    for item in canned:
        type, data = services.canned_render(canned=item, room=room, agent=request.user)
        items.append(
            {
                "shortcut": item.shortcut,
                "title": item.title,
                "shared": item.is_shared,
                "type": type,
                "data": data,
            }
        )
    return items


def _with_payloads(items):
    """``items`` each with ``payload``, its type and data as JSON for the page's select."""
    return [
        {**item, "payload": json.dumps({"type": item["type"], "data": item["data"]})}
        for item in items
    ]


def _posted_canned(request, room):
    """``(type, data)`` of the canned response a posted text names ("/price" alone), or
    None: typing the shortcut and sending works without the page's script."""
    if request.POST.get("type", "text") != "text":
        return None
    text = request.POST.get("text", "").strip()
    if not text.startswith("/") or len(text) < 2:
        return None
    canned = selectors.canned_by_shortcut(request.user, text[1:])
    if canned is None:
        return None
    return services.canned_render(canned=canned, room=room, agent=request.user)


def _get_room(pk):
    try:
        return selectors.room_get(pk=pk)
    except ChatRoom.DoesNotExist:
        raise Http404(_("No such conversation.")) from None


def _back_to_room(request, room):
    url = reverse("rchat:inbox-room", kwargs={"pk": room.pk})
    query = _querystring(_filters(request))
    return redirect(f"{url}?{query}" if query else url)


# --- Signing in and out ----------------------------------------------------------------


class LoginView(auth_views.LoginView):
    """rchat's sign-in page, for sites that have none: ``LOGIN_URL = "rchat:login"``.

    Agents need not be staff, so admin's login (staff only) cannot be theirs. Without
    a ``next`` it leads to the inbox, not to ``LOGIN_REDIRECT_URL``: this page is the
    inbox's door, and a new site's default (``/accounts/profile/``) does not exist.
    """

    template_name = "rchat/login.html"
    redirect_authenticated_user = True
    next_page = reverse_lazy("rchat:inbox")


@login_not_required
@require_POST
def language_set(request):
    """The language switch of the inbox and the sign-in page (``language``, ``next``).

    Django's ``set_language`` does the work: it remembers the choice in Django's
    language cookie, which LocaleMiddleware reads on every later page (check
    rchat.W008 says when the site lacks the middleware), and sends the browser back to
    ``next`` when it is a page of this site. A language the site does not offer is a
    400 saying so, rather than a silent redirect.
    """
    code = request.POST.get("language", "")
    if code not in dict(settings.LANGUAGES):
        return HttpResponse(
            _("“%(code)s” is not one of this site's languages.") % {"code": code[:20]},
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    return i18n.set_language(request)


class LogoutView(auth_views.LogoutView):
    """Sign out (a POST, as Django requires) and come back to rchat's sign-in page."""

    next_page = reverse_lazy("rchat:login")

    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        # Added after logout() flushed the session, so the sign-in page shows it.
        messages.success(request, _("You are signed out."))
        return response


# --- Pages -----------------------------------------------------------------------------


@require_GET
@can_see
def inbox(request):
    """The room list, with no conversation open."""
    context = _room_list_context(request, _filters(request))
    return render(request, "rchat/inbox.html", context)


@require_GET
@can_see
def room_list_partial(request):
    """The room list alone, for the page's poll (``current``: the open room's id)."""
    current = request.GET.get("current", "")
    current = int(current) if current.isdigit() else None
    context = _room_list_context(request, _filters(request), current=current)
    # The tabs' counts ride along and replace the tabs in place (htmx out-of-band swap).
    context["oob"] = True
    # On the mentions page its tab stays the current one.
    context["mentions_page"] = request.GET.get("mentions") == "1"
    return render(request, "rchat/_room_list.html", context)


@require_http_methods(["GET", "POST"])
@can_see
def conversation(request, pk):
    """One conversation: the thread, the reply box and the room's actions.

    Opening it marks the room read. A POST sends a reply and redirects back; a reply
    that cannot be sent re-renders the page with the reason and queues nothing.
    """
    room = _get_room(pk)
    form = ReplyForm()
    if request.method == "POST":
        if not request.user.has_perm(REPLY_PERMISSION):
            raise PermissionDenied(_("You may read this conversation but not reply to it."))
        form = ReplyForm(request.POST, request.FILES)
        if form.is_valid():
            # "/price" alone is a valid text: the canned response it names, if any, is
            # sent (not beside a file: then the text is sent as typed).
            canned = None if form.upload() else _posted_canned(request, room)
            try:
                reply_send(form, room=room, request=request, message=canned)
            except InvalidMessage as exc:
                # What only the room can tell (closed, handled by the bot …).
                form.add_service_errors(exc)
            else:
                return _back_to_room(request, room)
    return _conversation_page(request, room, form=form)


def _conversation_page(request, room, *, form, note_form=None):
    """The conversation drawn with ``form`` in the reply box and ``note_form`` (or an
    empty one) under the notes: what a GET shows, and a refused reply or note."""
    services.room_mark_read(room=room)
    # The agent sees the room's notes: the ones that mention them are seen.
    services.mentions_seen(user=request.user, room=room)
    context = _room_list_context(request, _filters(request), current=room.pk)
    context.update(_thread_context(request, room))
    context.update(_notes_context(request, room, note_form))
    action = reverse("rchat:inbox-room", kwargs={"pk": room.pk})
    if context["querystring"]:
        action = f"{action}?{context['querystring']}"
    context.update(
        {
            "room": room,
            "form": form,
            "reply_action": action,
            "canned_url": reverse("rchat:inbox-canned", kwargs={"pk": room.pk}),
            "presence_url": reverse("rchat:inbox-presence", kwargs={"pk": room.pk}),
            "canned_items": _with_payloads(
                _canned_items(request, room, selectors.canned_for(request.user))
            ),
        }
    )
    return render(request, "rchat/conversation.html", context)


@require_GET
@can_reply
def canned_list(request, pk):
    """The agent's canned responses matching ``q`` (a shortcut's start, or part of a
    title), rendered for this room, as JSON: ``{"results": [...]}`` for the reply box."""
    room = _get_room(pk)
    canned = selectors.canned_matching(request.user, request.GET.get("q", ""))
    items = _canned_items(request, room, canned[:CANNED_SUGGESTIONS])
    return JsonResponse({"results": items})


@require_GET
@can_see
def thread_partial(request, pk):
    """The thread alone, for the page's poll: 204 while version ``v`` is current."""
    room = _get_room(pk)
    since = request.GET.get("since", "")
    since_id = int(since) if since.isdigit() else 0
    present = selectors.room_presence(room=room, user=request.user)
    if request.GET.get("v") == _thread_version(room, since_id, present):
        return HttpResponse(status=204)
    # The agent is looking at the conversation: what arrives is read.
    services.room_mark_read(room=room)
    context = _thread_context(request, room, present)
    context.update({"room": room, "querystring": _querystring(_filters(request))})
    return render(request, "rchat/_thread.html", context)


# --- Actions (POST, then back to the conversation) ---------------------------------------


@require_POST
@can_reply
def room_assign(request, pk):
    """Assign the room to the agent, or with ``unassign`` leave it to nobody."""
    room = _get_room(pk)
    user = None if request.POST.get("unassign") else request.user
    services.room_assign(room=room, user=user)
    if user is None:
        messages.success(request, _("Conversation unassigned."))
    else:
        messages.success(request, _("Conversation assigned to you."))
    return _back_to_room(request, room)


def _room_change(change, done):
    """A POST view that applies the service ``change`` to the room, then goes back to it."""

    @require_POST
    @can_reply
    def view(request, pk):
        room = _get_room(pk)
        change(room=room)
        messages.success(request, done)
        return _back_to_room(request, room)

    return view


room_close = _room_change(services.room_close, gettext_lazy("Conversation closed."))
room_reopen = _room_change(services.room_reopen, gettext_lazy("Conversation reopened."))


@require_POST
@can_reply
def room_take_over(request, pk):
    """People answer the room from now on: the bot stops, the agent gets it if nobody has."""
    room = _get_room(pk)
    try:
        services.room_take_over(room=room, user=request.user)
    except InvalidMessage as exc:
        messages.error(request, _("Could not take over: %(reason)s") % {"reason": exc})
    else:
        messages.success(request, _("You took over this conversation: the bot stays silent."))
    return _back_to_room(request, room)


@require_POST
@can_reply
def room_return_to_bot(request, pk):
    """The bot answers the room again, from the end user's next message on."""
    room = _get_room(pk)
    try:
        services.room_return_to_bot(room=room, by=request.user)
    except InvalidMessage as exc:
        messages.error(request, _("Could not return it to the bot: %(reason)s") % {"reason": exc})
    else:
        messages.success(request, _("Conversation returned to the bot."))
    return _back_to_room(request, room)


@require_POST
@can_reply
def message_retry(request, pk, message_pk):
    """Send a failed reply again."""
    room = _get_room(pk)
    # A message id from another room is not found here, rather than retried.
    message = get_object_or_404(Message, pk=message_pk, room=room, direction=Message.Direction.OUT)
    try:
        services.message_retry(message=message)
    except InvalidMessage as exc:
        messages.error(request, _("Could not retry: %(reason)s") % {"reason": exc})
    else:
        messages.success(request, _("Message queued again."))
    return _back_to_room(request, room)


# --- Labels (POST, then back to the conversation) -----------------------------------------


def _posted_label(request):
    """The label whose id the form posted (``label``), or None."""
    pk = request.POST.get("label", "")
    return selectors.label_list().filter(pk=int(pk)).first() if pk.isdigit() else None


@require_POST
@can_reply
def room_label_add(request, pk):
    """Put the chosen label on the room."""
    room = _get_room(pk)
    label = _posted_label(request)
    if label is None:
        messages.error(request, _("Choose a label to add."))
    else:
        services.room_label_add(room=room, label=label)
        messages.success(request, _("Label “%(name)s” added.") % {"name": label.name})
    return _back_to_room(request, room)


@require_POST
@can_reply
def room_label_remove(request, pk):
    """Take a label off the room."""
    room = _get_room(pk)
    label = _posted_label(request)
    if label is None:
        messages.error(request, _("That label does not exist any more."))
    else:
        services.room_label_remove(room=room, label=label)
        messages.success(request, _("Label “%(name)s” removed.") % {"name": label.name})
    return _back_to_room(request, room)


# --- Presence: who else has the conversation open ---------------------------------------


@require_POST
@can_see
def room_presence(request, pk):
    """The open page's beat (presence.js): ``state`` "viewing" every few seconds,
    "typing" while the agent types a reply, "left" when the page goes away. 204; 400
    with ``{"error": reason}`` for another state. Colleagues' polls of the thread show
    it; nothing is written to the database."""
    return presence_answer(request, _get_room(pk))


# --- Attachments: the files R-Chat fetches ------------------------------------------------

#: What a served attachment may do in a browser that opens it: load nothing, run
#: nothing, in a sandbox of no origin (the policy GitHub gives raw files; the inline
#: styles are the browser's own image viewer's).
ATTACHMENT_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


def _attachment_headers(response):
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = ATTACHMENT_CSP
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


@login_not_required
@require_safe
def attachment(request, key, name):
    """An attachment's file, for R-Chat (and the agents' pages) to fetch; no login.

    The 256-bit key in the URL is the only secret: R-Chat signs in nowhere, and a URL
    sent to an end user's chat must open for them. ``name`` is for people and R-Chat's
    apps to see; the key alone finds the file. The file is streamed from the
    attachments' storage, whatever it is (files on disk, S3 …), in its checked type:
    an image inline, anything else as a download, never sniffed into something else.
    An unknown key is a bare 404 that says nothing.
    """
    found = selectors.attachment_by_key(key)
    try:
        stored = found.file.open("rb") if found is not None else None
    except (FileNotFoundError, OSError):
        # The row outlived its file (deleted by hand from the storage).
        stored = None
    if stored is None:
        return _attachment_headers(HttpResponseNotFound(b"", content_type="text/plain"))
    image = found.kind == found.Kind.IMAGE
    response = FileResponse(
        stored, as_attachment=not image, filename=found.name, content_type=found.content_type
    )
    # The bytes behind a key never change; a fetch may be cached by the one who has it.
    response["Cache-Control"] = "private, max-age=86400"
    return _attachment_headers(response)


# --- Search: the messages that hold a text ------------------------------------------------


class MessageSearchForm(forms.Form):
    """The search page's box: the text to find in messages (any case, any script)."""

    q = forms.CharField(
        label=gettext_lazy("Search messages"),
        max_length=200,
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": gettext_lazy("Text in a message")}
        ),
        error_messages={"required": gettext_lazy("Type what to look for.")},
    )
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def clean_q(self):
        q = self.cleaned_data["q"]
        if not search.can_search_messages(q):
            raise forms.ValidationError(
                _(
                    "Type at least %(count)d letters or digits in a row to search messages;"
                    " the list on the left searches names for shorter text."
                )
                % {"count": search.MIN_RUN},
                code="too_short",
            )
        return q


def _search_result(message, q):
    """A row of the search page: the message, its snippet, and where it is in its room
    (the thread ending at it; ``before`` is exclusive)."""
    url = reverse("rchat:inbox-room", kwargs={"pk": message.room_id})
    return {
        "message": message,
        "room": message.room,
        "snippet": search.snippet(message.text, q),
        "url": f"{url}?{urlencode({'before': message.pk + 1})}#message-{message.pk}",
    }


@require_GET
@can_see
def message_search(request):
    """Messages holding ``q``, newest first, each a snippet with the match marked and
    a link to it in its conversation; ``before`` pages on to older matches.

    The room list beside it keeps the inbox's filters but not ``q``: it polls every
    two seconds, and filtering rooms by a common word's messages each time would cost
    more than the search itself. The tab (``view``) narrows the messages searched.
    """
    filters = {**_filters(request), "q": ""}
    # Its own ids: the room list's search box on the same page is "id_q".
    form = MessageSearchForm(request.GET if "q" in request.GET else None, auto_id="search_%s")
    results, has_older, q = [], False, ""
    if form.is_valid():
        q = form.cleaned_data["q"]
        rows, has_older = selectors.message_search_page(
            user=request.user, q=q, view=filters["view"], before=form.cleaned_data["before"]
        )
        results = [_search_result(message, q) for message in rows]
    context = _room_list_context(request, filters)
    older = ""
    if has_older:
        older = _querystring({"q": q, "view": filters["view"], "before": results[-1]["message"].pk})
    context.update(
        {
            "search_form": form,
            "search_q": q,
            "results": results,
            "older_querystring": older,
        }
    )
    return render(request, "rchat/search.html", context)


# --- Private notes and mentions -------------------------------------------------------------


@require_POST
@can_reply
def note_add(request, pk):
    """Add a private note to the room (never sent to R-Chat), then back to it.

    A note that cannot be saved shows the conversation again with the reason next to
    the note and its text as typed.
    """
    room = _get_room(pk)
    form = NoteForm(request.POST)
    if form.is_valid():
        try:
            services.note_add(room=room, author=request.user, body=form.cleaned_data["body"])
        except ValidationError as exc:
            form.add_error("body", exc)
        else:
            messages.success(request, _("Note added."))
            return _back_to_notes(request, room)
    return _conversation_page(request, room, form=ReplyForm(), note_form=form)


@require_POST
@can_reply
def note_delete(request, pk, note_pk):
    """Delete a note of the room: one's own, or anyone's with ``rchat.delete_note``."""
    room = _get_room(pk)
    note = get_object_or_404(Note, pk=note_pk, room=room)
    services.note_delete(note=note, user=request.user)
    messages.success(request, _("Note deleted."))
    return _back_to_notes(request, room)


def _back_to_notes(request, room):
    response = _back_to_room(request, room)
    response["Location"] += "#rchat-notes"
    return response


@require_GET
@can_see
def mentions(request):
    """The notes that mention the agent, newest first; each links to its conversation,
    where opening it marks the mention seen."""
    context = _room_list_context(request, _filters(request))
    context.update(
        {
            "mentions": list(selectors.mention_list(user=request.user)[: selectors.MENTIONS_LIMIT]),
            "mentions_limit": selectors.MENTIONS_LIMIT,
            "mentions_page": True,
        }
    )
    return render(request, "rchat/mentions.html", context)
