"""The celery collector."""
