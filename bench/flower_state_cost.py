"""In-process: what ``celery.flower_metrics`` adds to the cost of each Celery event.

Folds the same event stream (per task: task-sent from a client, then task-received,
-started and -succeeded from one of 20 workers, over 50 task names; a heartbeat every
tenth task) into ``EventState.handle`` without and with Flower's families attached,
five rounds each, and prints the CPU time per event, then the CPU time of building the
Flower families of the state that is left::

    .venv/bin/python bench/flower_state_cost.py --tasks 50000

Sample output (2-core VM, shared)::

    flower_metrics=False: 1.86 us/event CPU (min of 5 rounds of 205000 events; median 1.95)
    flower_metrics=True: 3.30 us/event CPU (min of 5 rounds of 205000 events; median 3.36)
    flower families: 2254 samples built in 2.9 ms CPU
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

from exporter.collectors.celery.events import EventState
from exporter.collectors.celery.flower import FlowerMetrics
from exporter.collectors.celery.settings import CelerySettings

ROUNDS = 5


def events(tasks: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    t = 1000.0
    for i in range(tasks):
        uuid, worker, name = f"id{i}", f"celery@w{i % 20}", f"app.task{i % 50}"
        out += [{"type": "task-sent", "uuid": uuid, "name": name, "queue": "celery",
                 "hostname": "gen1@client", "timestamp": t, "eta": None},
                {"type": "task-received", "uuid": uuid, "name": name, "hostname": worker,
                 "timestamp": t + 0.01, "eta": None},
                {"type": "task-started", "uuid": uuid, "hostname": worker,
                 "timestamp": t + 0.02},
                {"type": "task-succeeded", "uuid": uuid, "hostname": worker,
                 "timestamp": t + 0.05, "runtime": 0.03}]
        if i % 10 == 0:
            out.append({"type": "worker-heartbeat", "hostname": worker, "active": 1,
                        "timestamp": t})
        t += 0.001
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=50000)
    args = parser.parse_args()
    stream = events(args.tasks)
    base = CelerySettings(broker_url="redis://127.0.0.1:1/0")
    per_event: dict[bool, list[float]] = {False: [], True: []}
    flower: FlowerMetrics | None = None
    for _ in range(ROUNDS):
        for on in (False, True):
            state = EventState(dataclasses.replace(base, flower_metrics=on))
            flower = FlowerMetrics(state) if on else flower
            batch = [dict(e) for e in stream]  # the receiver hands over fresh dicts
            start = time.process_time()
            for event in batch:
                state.handle(event)
            per_event[on].append((time.process_time() - start) / len(batch) * 1e6)
    for on, costs in per_event.items():
        costs.sort()
        print(f"flower_metrics={on}: {costs[0]:.2f} us/event CPU (min of {ROUNDS} rounds of "
              f"{len(stream)} events; median {costs[ROUNDS // 2]:.2f})")
    assert flower is not None
    start = time.process_time()
    families = flower.metrics()
    spent = time.process_time() - start
    print(f"flower families: {sum(len(f.samples) for f in families)} samples built in "
          f"{spent * 1000:.1f} ms CPU")


if __name__ == "__main__":
    main()
