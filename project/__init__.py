"""A Django project that hosts rchat for development, tests and the demo."""

from .celery import app as celery_app

__all__ = ["celery_app"]
