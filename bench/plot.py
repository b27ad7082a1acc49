"""One PNG per result file in bench/results/.

    .venv/bin/pip install -e '.[bench]'      # matplotlib: bench only, never a runtime dep
    .venv/bin/python -m bench.plot            # every file -> bench/results/<name>.png
    .venv/bin/python -m bench.plot floor celery-anchors ratios-allinone ratios-host

``scale-*.json`` (bench/scale.py), ``floor.json`` (bench/floor.py), ``celery-anchors.json``
(bench/celery_anchors.py) and ``ratios-*.json`` (bench/ratios.py, run by all_in_one.sh and
host.sh) each have their own figure; the scale ones are described here:

Each PNG has four panels against the dimension: scrape latency (p50 solid, p99 dotted),
exporter CPU ms per scrape, series per scrape, and the backend's work per scrape (or RSS
where there is no backend). One line per exporter and variant, stackmon beside the anchor.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib import ticker

RESULTS = Path(__file__).resolve().parent / "results"
COLOURS = {"stackmon": "tab:blue", "postgres_exporter": "tab:orange",
           "redis_exporter": "tab:red", "node_exporter": "tab:green", "floor": "tab:gray",
           "celery-exporter": "tab:purple", "flower": "tab:brown",
           "anchors": "tab:orange"}
# The fourth is dash-dot-dot, not ":", which is the p99 / companion line.
STYLES: list[Any] = ["-", "--", "-.", (0, (5, 1.5, 1, 1.5, 1, 1.5))]

# Fourth panel: the first figure the points have.
BACKEND_PANELS = [
    ("pg_server_cpu_ms_per_scrape", "PostgreSQL server CPU ms / scrape"),
    ("redis_commands_per_scrape", "Redis commands / scrape"),
    ("handle_us_per_event", "EventState.handle µs / event"),
    ("threads", "exporter threads"),
]


# Dimensions whose story is in other figures than the default four.
PANELS = {
    "redis-targets": [("p50_ms", "ms per probe (p50 —, p99 ···)"),
                      ("cpu_ms_per_scrape", "exporter CPU ms / probe"),
                      ("redis_connections_held", "Redis connections held between probes"),
                      ("rss_mb", "exporter RSS MB")],
    "redis-prometheus": [("cpu_ms_per_scrape", "exporter CPU ms / probe"),
                         ("redis_connections_held", "Redis connections held"),
                         ("rss_mb", "exporter RSS MB"),
                         ("p50_ms", "Prometheus scrape_duration ms (p50 —, p99 ···)")],
    "encoder": [("text_cpu_ms", "prometheus_client text encoder CPU ms"),
                ("lean_cpu_ms", "lean encoder CPU ms (same bytes)"),
                ("build_cpu_ms", "building the families CPU ms"),
                ("gzip5_cpu_ms", "gzip level 5 CPU ms")],
    "celery-workers": [("p50_ms", "scrape ms (p50 —, p99 ···; in-process: CPU ms)"),
                       ("cpu_ms_per_scrape", "exporter CPU ms / scrape (in-process: build "
                        "+ text)"),
                       ("series", "series / scrape"),
                       ("rss_mb", "exporter RSS MB (in-process: the bench's)")],
    "celery-events": [("lost_pct", "events lost %"),
                      ("drain_lag_s", "drain lag after the last publish, s"),
                      ("exporter_cpu_pct", "CPU % of one core: exporter —, publisher ···"),
                      ("rss_mb", "exporter RSS MB")],
    "services": [("p50_ms", "scrape ms (p50 —, p99 ···)"),
                 ("cpu_ms_per_scrape", "exporter CPU ms / scrape"),
                 ("series", "series / scrape"), ("threads", "exporter threads")],
}


# A panel's second figure, drawn dotted in the same colour.
DOTTED = {"p50_ms": "p99_ms", "exporter_cpu_pct": "publisher_cpu_pct"}


def lines(points: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for p in points:
        out[(p["exporter"], p["series_name"])].append(p)
    for pts in out.values():
        pts.sort(key=lambda p: p["x"])
    return out


def plot(doc: dict[str, Any], path: Path) -> None:
    points = doc["points"]
    groups = lines(points)
    fourth = next(((k, label) for k, label in BACKEND_PANELS if k in points[0]),
                  ("rss_mb", "exporter RSS MB"))
    panels = [("p50_ms", "scrape ms (p50 —, p99 ···)"), ("cpu_ms_per_scrape",
              "exporter CPU ms / scrape"), ("series", "series / scrape"), fourth]
    if doc.get("in_process"):
        panels[0] = ("render_cpu_ms", "text exposition CPU ms / scrape")
        panels[1] = ("cpu_ms_per_scrape", "CPU ms / scrape (build + text, in-process)")
    panels = PANELS.get(doc["dimension"], panels)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    variants: dict[str, int] = {}
    xs_all = [p["x"] for p in points]
    for (exporter, name), pts in groups.items():
        style = STYLES[variants.setdefault(name, len(variants)) % len(STYLES)]
        colour = COLOURS.get(exporter, "tab:gray")
        xs = [p["x"] for p in pts]
        for ax, (key, _label) in zip(axes.flat, panels, strict=True):
            if key not in pts[0]:
                continue
            ax.plot(xs, [p[key] for p in pts], linestyle=style, color=colour, marker="o",
                    label=f"{exporter} ({name})")
            dotted = DOTTED.get(key)
            if dotted and dotted in pts[0]:
                ax.plot(xs, [p[dotted] for p in pts], ":", color=colour, marker=".")
    for ax, (key, label) in zip(axes.flat, panels, strict=True):
        ax.set_title(label, fontsize=10)
        ax.set_xlabel(doc["x_label"])
        # Log scale only for ranges over three decades (keys, tables): a linear axis
        # shows "at most linear" as a straight line, which is what the verdicts are about.
        loglog = max(xs_all) >= 1000 * min(xs_all)
        if loglog:  # and then log y too: linear growth is a slope-1 line, flat is flat
            ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
        positive = all(p.get(key, 1) > 0 for p in points)
        # p99 can be 10-100x p50 under load: log y then, but only where the latencies
        # span a decade (within one, a log axis has no labelled ticks).
        latency = [p[k] for p in points for k in ("p50_ms", "p99_ms") if p.get(k, 0) > 0]
        spread = key == "p50_ms" and latency and max(latency) >= 10 * min(latency)
        if spread or (loglog and positive):
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ticker.ScalarFormatter())
            ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        else:
            ax.set_ylim(bottom=0)
    for ax in axes.flat:  # the first panel with lines carries the legend
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
            break
    fig.suptitle(f"{doc['dimension']} — measured {doc['measured']} "
                 f"({doc['machine']['cpus']} CPUs, load {doc['machine']['load1']:.1f})",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


TABLE_KEYS = [("probes", "probes"), ("up_ratio", "up=1 share"),
              ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("cpu_ms_per_scrape", "CPU ms/scrape"),
              ("cpu_ms_per_scrape_above_idle", "CPU ms/scrape above idle"),
              ("cpu_ms_per_s", "CPU ms/s"),
              ("series", "series"), ("rss_mb", "RSS MB"), ("rss_growth_mb", "RSS growth MB"),
              ("pg_xacts_per_scrape", "PG xacts/scrape"),
              ("pg_server_cpu_ms_per_scrape", "PG CPU ms/scrape"),
              ("pg_client_backends", "PG backends"),
              ("tables_omitted", "tables omitted (cap)"),
              ("redis_commands_per_scrape", "Redis cmds/scrape"),
              ("redis_server_cpu_ms_per_scrape", "Redis CPU ms/scrape"),
              ("redis_connections_held", "Redis conns held"),
              ("redis_connected_clients", "Redis clients (server side)"),
              ("unprobed_connections_held", "conns to unprobed targets"),
              ("redis_connections_opened_per_scrape", "Redis conns opened/scrape"),
              ("redis_servers_left_out", "Redis servers left out"),
              ("idle_cpu_ms_per_s", "idle CPU ms/s"), ("threads", "threads"),
              ("build_cpu_ms", "build ms"), ("render_cpu_ms", "render ms"),
              ("handle_us_per_event", "handle µs/event"),
              ("overflow_task_name", "overflow task_name"),
              ("overflow_worker", "overflow worker"),
              ("overflow_task_series", "overflow task_series"),
              ("text_cpu_ms", "prometheus_client text ms"),
              ("openmetrics_cpu_ms", "OpenMetrics ms"),
              ("lean_cpu_ms", "lean encoder ms"),
              ("gzip5_cpu_ms", "gzip -5 ms"), ("gzip1_cpu_ms", "gzip -1 ms"),
              ("workers_up", "workers up"), ("task_hosts", "task hosts"),
              ("succeeded_series", "task series rows (name, host)"),
              ("achieved_rate", "achieved events/s"), ("consumed", "consumed"),
              ("lost", "lost"), ("lost_pct", "lost %"), ("drain_lag_s", "drain lag s"),
              ("exporter_cpu_pct", "exporter CPU % core"),
              ("exporter_cpu_ms_per_1k_events", "exporter CPU ms/1k events"),
              ("publisher_cpu_pct", "publisher CPU % core"),
              ("redis_cpu_pct", "Redis CPU % core"),
              ("exporter_runqueue_wait_pct", "exporter run-queue wait %"),
              ("receiver_restarts", "receiver restarts")]


def markdown(doc: dict[str, Any]) -> str:
    """The points as a Markdown table (columns: the figures the points have)."""
    points = sorted(doc["points"], key=lambda p: (p["exporter"], p["series_name"], p["x"]))
    keys = [(k, label) for k, label in TABLE_KEYS if any(k in p for p in points)]
    rows = [f"| exporter | variant | {doc['x_label']} | " + " | ".join(lb for _, lb in keys)
            + " |", "|---|---|---|" + "---|" * len(keys)]
    for p in points:
        cells = [f"{p[k]:.3g}" if k in p and abs(p[k]) < 999.5 else  # no 1e+03
                 f"{p[k]:.0f}" if k in p else "" for k, _ in keys]
        rows.append(f"| {p['exporter']} | {p['series_name']} | {p['x']:,} | "
                    + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot_floor(doc: dict[str, Any], path: Path) -> None:
    """CPU per scrape of the floor, stackmon and the anchor(s), per collector (medians)."""
    from bench.floor import ANCHORS

    groups = [g for g, rounds in doc["rounds"].items() if rounds]
    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.27
    for i, group in enumerate(groups):
        rounds = doc["rounds"][group]
        floor = statistics.median(r[f"floor-{group}"]["cpu_ms"] for r in rounds)
        bars = [("floor", floor),
                ("stackmon", statistics.median(r[f"stackmon-{group}"]["cpu_ms"] for r in rounds)),
                ("anchors", statistics.median(sum(r[a]["cpu_ms"] for a in ANCHORS[group])
                                              for r in rounds))]
        for j, (who, value) in enumerate(bars):
            ax.bar(i + (j - 1) * width, value, width, color=COLOURS[who],
                   label=who if i == 0 else None)
            ax.annotate(f"{value:.2f}" + ("" if who == "floor" else f"\n{value / floor:.1f}x"),
                        (i + (j - 1) * width, value), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(groups)),
                  [g if g != "all" else "host + postgres + redis" for g in groups])
    ax.set_yscale("log")
    ax.set_ylabel("CPU ms per scrape (log)")
    ax.set_title("CPU per scrape: the floor (same reads, queries, pipeline, bytes), stackmon, "
                 "the anchor(s); labels: x the floor", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_ratios(doc: dict[str, Any], path: Path) -> None:
    """Per run: CPU per scrape and RSS, stackmon against the anchor(s), with the targets."""
    runs = doc["runs"]
    who = "anchors (sum)" if doc["kind"] == "allinone" else "node_exporter"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    xs = range(1, len(runs) + 1)
    for ax, key, label in ((axes[0], "cpu", "CPU ms per scrape"), (axes[1], "rss", "RSS MB")):
        ax.bar([x - 0.2 for x in xs], [r["anchors"][key] for r in runs], 0.4,
               color=COLOURS["anchors"], label=who)
        ax.bar([x + 0.2 for x in xs], [r["stackmon"][key] for r in runs], 0.4,
               color=COLOURS["stackmon"], label="stackmon")
        for x, r in zip(xs, runs, strict=True):
            target = doc["targets"][key] * r["anchors"][key]
            ax.hlines(target, x - 0.4, x + 0.4, colors="black", linestyles="dashed",
                      label=f"target {doc['targets'][key]}x" if x == 1 else None)
            ax.annotate(f"{r['ratio'][key]:.2f}x", (x + 0.2, r["stackmon"][key]),
                        ha="center", va="bottom", fontsize=8)
        ax.set_xticks(list(xs), [f"run {x}" for x in xs])
        ax.set_title(label, fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_celery_anchors(doc: dict[str, Any], path: Path) -> None:
    """CPU per 1,000 events against the rate (x: a lossy step), the lossless ceiling, RSS
    after the memory run and the scrape p50, one colour per exporter."""
    alone = doc["alone"]
    names = list(alone)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    ax = axes[0][0]
    for name in names:
        steps = alone[name]["steps"]
        ax.plot([s["offered"] for s in steps], [s["cpu_ms_per_1k"] for s in steps], "-o",
                color=COLOURS.get(name, "tab:gray"), label=name)
        lossy = [s for s in steps if s["lost"] > 0 or not s.get("kept_up", 1)]
        ax.plot([s["offered"] for s in lossy], [s["cpu_ms_per_1k"] for s in lossy], "x",
                color="black", markersize=10)
    ax.set_title("exporter CPU ms per 1,000 events (x: lost events or fell behind)",
                 fontsize=10)
    ax.set_xlabel("offered events/s")
    ax.legend(fontsize=8)
    for ax, key, label, log in (
            (axes[0][1], "lossless_events_per_s", "highest lossless events/s", False),
            (axes[1][0], "rss_mb", "RSS MB after the memory run", False),
            (axes[1][1], "scrape_p50_ms", "scrape p50 ms, 100 task names x 20 workers",
             True)):
        values = [alone[n][key] for n in names]
        ax.bar(names, values, color=[COLOURS.get(n, "tab:gray") for n in names])
        for i, v in enumerate(values):
            ax.annotate(f"{v:,.0f}" if v >= 100 else f"{v:.1f}", (i, v), ha="center",
                        va="bottom", fontsize=8)
        if log:
            ax.set_yscale("log")
        ax.set_title(label, fontsize=10)
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"Celery events: one stream, {doc['measured']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


OTHER_PLOTS = {"floor": plot_floor, "celery-anchors": plot_celery_anchors,
               "ratios-allinone": plot_ratios, "ratios-host": plot_ratios}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dimensions", nargs="*", help="default: every scale-*.json")
    ap.add_argument("--markdown", action="store_true",
                    help="print each dimension's figures as a Markdown table too")
    args = ap.parse_args()
    files = ([RESULTS / (f"{d}.json" if d in OTHER_PLOTS else f"scale-{d}.json")
              for d in args.dimensions] if args.dimensions
             else sorted(RESULTS.glob("*.json")))
    for src in files:
        doc = json.loads(src.read_text())
        if src.stem in OTHER_PLOTS:
            OTHER_PLOTS[src.stem](doc, src.with_suffix(".png"))
            print(f"wrote {src.with_suffix('.png').relative_to(RESULTS.parent.parent)}")
            continue
        out = src.with_suffix(".png")
        plot(doc, out)
        print(f"wrote {out.relative_to(RESULTS.parent.parent)}")
        if args.markdown:
            print(f"\n{doc['dimension']} ({doc['measured']}, load {doc['machine']['load1']:.1f})"
                  f"\n\n{markdown(doc)}\n")


if __name__ == "__main__":
    main()
