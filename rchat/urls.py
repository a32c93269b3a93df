"""rchat's URLs. Mount them in the host site: ``path("rchat/", include("rchat.urls"))``."""

from django.urls import include, path

from . import views, webhooks
from .admin_i18n import AdminJavaScriptCatalog

app_name = "rchat"

urlpatterns = [
    path("webhook/", webhooks.WebhookView.as_view(), name="webhook"),
    path("webhook/<str:key>/", webhooks.WebhookView.as_view(), name="webhook-key"),
    # --- Signing in (for sites without a login page: LOGIN_URL = "rchat:login")
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    # --- Languages: the inbox's language switch, and admin's script strings in Thai
    path("language/", views.language_set, name="language"),
    path("admin-i18n.js", AdminJavaScriptCatalog.as_view(), name="admin-jsi18n"),
    # --- Agent inbox and REST API
    path("inbox/", views.inbox, name="inbox"),
    path("inbox/rooms/", views.room_list_partial, name="inbox-rooms"),
    path("inbox/search/", views.message_search, name="inbox-search"),
    path("inbox/<int:pk>/", views.conversation, name="inbox-room"),
    path("inbox/<int:pk>/thread/", views.thread_partial, name="inbox-thread"),
    path("inbox/<int:pk>/assign/", views.room_assign, name="inbox-assign"),
    path("inbox/<int:pk>/close/", views.room_close, name="inbox-close"),
    path("inbox/<int:pk>/reopen/", views.room_reopen, name="inbox-reopen"),
    path("inbox/<int:pk>/take-over/", views.room_take_over, name="inbox-take-over"),
    path("inbox/<int:pk>/return-to-bot/", views.room_return_to_bot, name="inbox-return-to-bot"),
    path(
        "inbox/<int:pk>/messages/<int:message_pk>/retry/", views.message_retry, name="inbox-retry"
    ),
    path("inbox/<int:pk>/canned/", views.canned_list, name="inbox-canned"),
    path("inbox/<int:pk>/labels/add/", views.room_label_add, name="inbox-label-add"),
    path("inbox/<int:pk>/labels/remove/", views.room_label_remove, name="inbox-label-remove"),
    # --- Presence: who else has a conversation open, or types in it
    path("inbox/<int:pk>/presence/", views.room_presence, name="inbox-presence"),
    path("inbox/mentions/", views.mentions, name="inbox-mentions"),
    path("inbox/<int:pk>/notes/", views.note_add, name="inbox-note-add"),
    path("inbox/<int:pk>/notes/<int:note_pk>/delete/", views.note_delete, name="inbox-note-delete"),
    path("api/", include(("rchat.api.urls", "api"))),
    # --- Attachments: what R-Chat fetches (no login; the key is the secret)
    path("files/<str:key>/<str:name>", views.attachment, name="attachment"),
]
