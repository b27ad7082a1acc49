"""The sources of stackmon's dashboards, one module each, and :data:`DASHBOARDS`, the list
``python -m grafana.generate`` writes (in this order, as ``grafana/dashboards/<slug>.json``).

A new dashboard is a new module here holding its ``Dash(...)`` and the constants only it
uses (what several dashboards show goes in ``shared.py``), plus one entry below.
"""

from __future__ import annotations

from grafana.dashboards_src.cache import CACHE
from grafana.dashboards_src.celery import CELERY
from grafana.dashboards_src.database import DATABASE
from grafana.dashboards_src.overview import OVERVIEW
from grafana.dashboards_src.tasks import TASKS
from grafana.lib.dashboard import Dash

DASHBOARDS: dict[str, Dash] = {d.slug: d for d in (OVERVIEW, DATABASE, CACHE, CELERY, TASKS)}
