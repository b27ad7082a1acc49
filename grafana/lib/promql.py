"""PromQL helpers: a panel's query (:class:`Q`), the job/instance scope added to every
selector (:func:`scoped`), and builders for rate, increase, ratio and quantile expressions.

Queries are written with ``{...}`` label matchers (``{}`` for none); :func:`scoped` adds
``job=~"$job", instance=~"$instance"`` to every one of them (``$app_job`` /
``$app_instance`` for the Django application's own ``django_*`` series, which come from
another scrape target)::

    >>> rate("redis_commands_processed_total", "job, instance")
    'sum by (job, instance) (rate(redis_commands_processed_total{}[$__rate_interval]))'
    >>> scoped('redis_up{}')
    'redis_up{job=~"$job", instance=~"$instance"}'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

SCOPE = 'job=~"$job", instance=~"$instance"'
APP_SCOPE = 'job=~"$app_job", instance=~"$app_instance"'
APP_PREFIX = "django_"
RI = "$__rate_interval"
RANGE = "$__range"


def scoped(expr: str) -> str:
    """``expr`` with the job and instance matchers added to every label selector."""
    def add(m: re.Match[str]) -> str:
        name, matchers = m.group(1), m.group(2).strip()
        scope = APP_SCOPE if name.startswith(APP_PREFIX) else SCOPE
        return name + "{" + ", ".join(p for p in (scope, matchers) if p) + "}"
    return re.sub(r"([a-zA-Z_:][a-zA-Z0-9_:]*|)\{([^}]*)\}", add, expr)


@dataclass(frozen=True)
class Q:
    """One query of a panel: PromQL (unscoped) and its legend."""

    expr: str
    legend: str = ""


def rates(by: str, legend: str, series: Mapping[str, str], selector: str = "{}") -> list[Q]:
    """One query per counter (rate summed by ``by``), legend ``legend`` + its label."""
    return [Q(rate(metric, by, selector), f"{legend} {label}".strip())
            for metric, label in series.items()]


def quantile(q: float, bucket: str, by: str, selector: str = "{}") -> str:
    """The ``q`` quantile of a histogram's ``_bucket`` series, per ``by``; ``>= 0`` drops
    the NaN a window without observations gives (no NaN on the panel)."""
    return f"histogram_quantile({q}, {rate(bucket, 'le, ' + by, selector)}) >= 0"


def rate(metric: str, by: str = "", selector: str = "{}", window: str = RI) -> str:
    """Per-second rate of a counter over ``window``, summed by ``by`` when given."""
    inner = f"rate({metric}{selector}[{window}])"
    return f"sum by ({by}) ({inner})" if by else inner


def increase(metric: str, by: str, selector: str = "{}", window: str = RANGE) -> str:
    """Increase of a counter over ``window`` (default: the selected range), summed by ``by``."""
    return f"sum by ({by}) (increase({metric}{selector}[{window}]))"


def ratio(part: str, whole: str) -> str:
    """``part / whole``, 0 (not NaN) where ``whole`` is 0: an idle window shows 0 %; and
    0 (not "No data") where ``part`` has no series yet (no 5xx, no failure so far)."""
    return f"({part} or {whole} * 0) / clamp_min({whole}, 1e-9)"


def failure_ratio(failed: str, succeeded: str) -> str:
    """failed / (failed + succeeded) per series, where either side may have no series
    yet (a task that never failed, or never succeeded): the missing side counts 0."""
    return ratio(failed, f"(({failed} or {succeeded} * 0) + ({succeeded} or {failed} * 0))")
