"""The API's URLs, included by rchat.urls under ``api/`` with the namespace ``rchat:api``."""

from django.contrib.auth.decorators import login_not_required
from django.urls import path, re_path

from . import docs, views


def api(view_class):
    # The API authenticates on its own (session or token) and answers 401/403 in
    # JSON; a site-wide LoginRequiredMiddleware must not redirect bots to a login page.
    return login_not_required(view_class.as_view())


urlpatterns = [
    path("rooms/", api(views.RoomListView), name="room-list"),
    path("rooms/<int:pk>/", api(views.RoomDetailView), name="room-detail"),
    path("rooms/<int:pk>/messages/", api(views.RoomMessagesView), name="room-messages"),
    path("rooms/<int:pk>/assign/", api(views.RoomAssignView), name="room-assign"),
    path("rooms/<int:pk>/close/", api(views.RoomCloseView), name="room-close"),
    path("rooms/<int:pk>/reopen/", api(views.RoomReopenView), name="room-reopen"),
    path("rooms/<int:pk>/read/", api(views.RoomReadView), name="room-read"),
    path("rooms/<int:pk>/take-over/", api(views.RoomTakeOverView), name="room-take-over"),
    path(
        "rooms/<int:pk>/return-to-bot/",
        api(views.RoomReturnToBotView),
        name="room-return-to-bot",
    ),
    path("rooms/<int:pk>/hand-over/", api(views.RoomHandOverView), name="room-hand-over"),
    path("rooms/<int:pk>/labels/", api(views.RoomLabelsView), name="room-labels"),
    path("rooms/<int:pk>/attachments/", api(views.RoomAttachmentsView), name="room-attachments"),
    path("labels/", api(views.LabelListView), name="label-list"),
    path("rooms/<int:pk>/notes/", api(views.RoomNotesView), name="room-notes"),
    path("mentions/", api(views.MentionListView), name="mention-list"),
    path("canned/", api(views.CannedListView), name="canned-list"),
    path(
        "rooms/<int:pk>/messages/<int:message_pk>/retry/",
        api(views.MessageRetryView),
        name="message-retry",
    ),
    path("messages/search/", api(views.MessageSearchView), name="message-search"),
    path("broadcasts/", api(views.BroadcastListView), name="broadcast-list"),
    path("broadcasts/<int:pk>/", api(views.BroadcastDetailView), name="broadcast-detail"),
    path("broadcasts/<int:pk>/cancel/", api(views.BroadcastCancelView), name="broadcast-cancel"),
    path("schema/", api(docs.SchemaView), name="schema"),
    path("docs/", docs.DocsView.as_view(), name="docs"),
    # Last: any other URL under the API answers a JSON 404, not the site's HTML page.
    re_path(r"", login_not_required(views.not_found)),
]
