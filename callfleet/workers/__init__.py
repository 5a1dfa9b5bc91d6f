"""Celery app, call-host worker processes, webhook delivery (issue 5)."""
