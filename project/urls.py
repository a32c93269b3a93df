from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("rchat/", include("rchat.urls")),
    # Agents sign in here; they need not be staff (the admin's login is for staff).
    path("accounts/", include("django.contrib.auth.urls")),
]
