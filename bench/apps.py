from django.apps import AppConfig


class BenchConfig(AppConfig):
    """The benchmark's own app: the baseline view's table. Installed by bench.settings only."""

    name = "bench"
    label = "bench"
    default_auto_field = "django.db.models.BigAutoField"
