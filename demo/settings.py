"""Django settings of the demo, from the environment.

    DEMO_POSTGRES_DSN  postgresql://user:password@host:5432/dbname   (required)
    DEMO_REDIS_URL     redis://host:6379/0      Django's cache         (required)
    DEMO_BROKER_URL    redis://host:6379/1      Celery's broker        (required)
    DEMO_SECRET_KEY    Django's SECRET_KEY (default: a random one per process; the demo
                       keeps no sessions or signed data across restarts)
    DEMO_ALLOWED_HOSTS comma-separated host names (default: localhost,127.0.0.1)
    DEMO_DEBUG         1 for Django's debug mode (default 0)
"""

from __future__ import annotations

import os
import secrets
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured


def _env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ImproperlyConfigured(f"environment: {name} is not set (see demo/settings.py)")
    return value


def _postgres(dsn: str) -> dict[str, object]:
    """Django's DATABASES entry for a postgresql:// DSN (errors never echo the DSN: it
    may hold a password)."""
    url = urlsplit(dsn)
    if url.scheme not in ("postgres", "postgresql") or not url.path.strip("/"):
        raise ImproperlyConfigured("environment: DEMO_POSTGRES_DSN: expected "
                                   "postgresql://user:password@host:port/dbname")
    return {
        # django-prometheus's wrapper of Django's backend: query and error counters.
        "ENGINE": "django_prometheus.db.backends.postgresql",
        "NAME": unquote(url.path.lstrip("/")),
        "USER": unquote(url.username or ""),
        "PASSWORD": unquote(url.password or ""),
        "HOST": url.hostname or "",
        "PORT": str(url.port or ""),
        "CONN_MAX_AGE": 60,
        "OPTIONS": {"application_name": "demo"},
    }


BASE_DIR = os.path.dirname(os.path.abspath(__file__))
SECRET_KEY = os.environ.get("DEMO_SECRET_KEY") or secrets.token_urlsafe(48)
DEBUG = os.environ.get("DEMO_DEBUG", "0") == "1"
ALLOWED_HOSTS = [h.strip() for h in os.environ.get(
    "DEMO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h.strip()]

INSTALLED_APPS = ["django_prometheus", "demo"]
# The Before/After pair measures every request between them (latency by view and method,
# responses by status): django_http_requests_latency_seconds_by_view_method, ...
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]
ROOT_URLCONF = "demo.urls"
WSGI_APPLICATION = "demo.wsgi.application"

DATABASES = {"default": _postgres(_env("DEMO_POSTGRES_DSN"))}
CACHES = {
    "default": {
        # django-prometheus's wrapper of django-redis: get/hit/miss counters.
        "BACKEND": "django_prometheus.cache.backends.redis.RedisCache",
        "LOCATION": _env("DEMO_REDIS_URL"),
        "TIMEOUT": 300,
    }
}
CELERY_BROKER_URL = _env("DEMO_BROKER_URL")

USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
