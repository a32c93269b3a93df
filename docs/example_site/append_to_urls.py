# --- rchat: the webhook, the inbox, its sign-in page and the API, under /rchat/ ---------
from django.urls import include

urlpatterns += [
    path("rchat/", include("rchat.urls")),
]
