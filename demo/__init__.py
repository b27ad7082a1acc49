"""A small Django application instrumented with django-prometheus, the demo and test
workload of stackmon's API dashboards and alerts.

Views (``demo/urls.py``): ``/healthz``, ``/api/items`` (PostgreSQL), ``/api/cache``
(Redis), ``/api/tasks/<kind>`` (enqueues a Celery task that succeeds, fails or retries)
and ``/metrics`` (django-prometheus). Celery app: ``demo.celery_app:app``. WSGI:
``demo.wsgi:application``. Settings come from the environment (``demo/settings.py``).
"""
