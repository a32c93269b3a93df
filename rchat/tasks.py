"""Celery tasks. Each takes an id, re-reads the row and calls a service."""
