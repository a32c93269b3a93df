# Load the Celery app whenever Django starts, so what the site queues (rchat's replies)
# goes to the broker in settings.py.
from .celery import app as celery_app

__all__ = ("celery_app",)
