"""rchat's URLs. Mount them in the host site: ``path("rchat/", include("rchat.urls"))``."""

from django.urls import path

from . import webhooks

app_name = "rchat"

urlpatterns = [
    path("webhook/", webhooks.WebhookView.as_view(), name="webhook"),
    path("webhook/<str:key>/", webhooks.WebhookView.as_view(), name="webhook-key"),
]
