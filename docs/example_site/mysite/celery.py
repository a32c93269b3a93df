"""The site's Celery app; rchat's tasks run on it (``celery -A mysite worker``)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

app = Celery("mysite")
# Every setting whose name starts with CELERY_ configures Celery.
app.config_from_object("django.conf:settings", namespace="CELERY")
# Finds the tasks of every installed app, rchat's among them.
app.autodiscover_tasks()
