"""The demo's views: each touches one backend so the API dashboards have real traffic."""

from __future__ import annotations

import uuid

from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse

from demo import celery_app

TASKS = {"ok": "demo.add", "fail": "demo.fail", "retry": "demo.flaky"}


def healthz(request: HttpRequest) -> JsonResponse:
    """200 {"status": "ok"} when PostgreSQL and Redis answer, else 503 naming the failure."""
    failed = []
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
    except Exception:  # any failure means "not healthy"
        failed.append("postgres")
    try:
        cache.set("demo:healthz", 1, timeout=10)
    except Exception:
        failed.append("redis")
    if failed:
        return JsonResponse({"status": "unhealthy", "failed": failed}, status=503)
    return JsonResponse({"status": "ok"})


def items(request: HttpRequest) -> JsonResponse:
    """A few rows from PostgreSQL (the catalogue's tables, so no migration is needed)."""
    with connection.cursor() as cur:
        cur.execute("SELECT relname, relkind FROM pg_class ORDER BY oid LIMIT 10")
        rows = [{"name": name, "kind": kind} for name, kind in cur.fetchall()]
    return JsonResponse({"items": rows})


def cached(request: HttpRequest) -> JsonResponse:
    """A read-through cache hit or miss on Redis."""
    key = f"demo:counter:{request.GET.get('key', 'default')}"
    value = cache.get(key)
    hit = value is not None
    if not hit:
        value = 0
    cache.set(key, int(value) + 1, timeout=300)
    return JsonResponse({"key": key, "hit": hit, "value": int(value) + 1})


def enqueue(request: HttpRequest, kind: str) -> JsonResponse:
    """Enqueue a task that succeeds (ok), fails (fail) or fails once then succeeds (retry)."""
    name = TASKS.get(kind)
    if name is None:
        return JsonResponse({"error": f"unknown task kind {kind!r}; one of {sorted(TASKS)}"},
                            status=404)
    args = {"ok": [2, 3], "fail": [], "retry": [uuid.uuid4().hex]}[kind]
    result = celery_app.app.send_task(name, args=args)
    return JsonResponse({"task": name, "id": result.id}, status=202)
