"""The project's URLs plus the benchmark's baseline view (bench.settings only)."""

from django.urls import path

from project.urls import urlpatterns as project_urlpatterns

from . import views

urlpatterns = [
    path("bench/baseline/", views.baseline, name="bench-baseline"),
    *project_urlpatterns,
]
