"""stackmon against the anchors it replaces, as ratios per run and their medians.

Reads the ``--json`` files of ``scrape_bench.py`` runs (bench/all_in_one.sh and
bench/host.sh call this at their end), prints a Markdown table and writes a summary that
``bench/plot.py`` draws:

    .venv/bin/python -m bench.ratios allinone OUT/run1.json OUT/run2.json OUT/run3.json
    .venv/bin/python -m bench.ratios host bench/out/host-run{1,2,3}.json

``allinone``: stackmon (host + PostgreSQL + Redis) against the sum of node_exporter,
postgres_exporter and redis_exporter (targets: CPU per scrape <= 0.5x, RSS <= 0.9x).
``host``: stackmon's host collector against node_exporter (CPU <= 0.45x, RSS <= 1.2x).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
ANCHORS = {"allinone": ("node", "postgres_exporter", "redis_exporter"), "host": ("node",)}
TARGETS = {"allinone": {"cpu": 0.5, "rss": 0.9, "p50": 0.5}, "host": {"cpu": 0.45, "rss": 1.2}}


def figures(result: dict[str, Any]) -> dict[str, float]:
    seq = result["sequential"]
    return {"p50": float(seq["p50_ms"]), "cpu": float(seq["cpu_ms_per_scrape"]),
            "rss": float(result.get("memory", {}).get("rss_mb_after", 0.0)),
            "samples": float(result.get("samples", 0))}


def runs(kind: str, paths: list[str]) -> list[dict[str, Any]]:
    out = []
    for path in paths:
        doc = json.loads(Path(path).read_text())
        by_name = {r["name"]: figures(r) for r in doc["results"]}
        anchors = {k: sum(by_name[a][k] for a in ANCHORS[kind])
                   for k in ("p50", "cpu", "rss", "samples")}
        stackmon = by_name["stackmon"]
        out.append({"load1": doc["meta"].get("loadavg_start", [0.0])[0],
                    "anchors": anchors, "stackmon": stackmon,
                    "per_anchor": {a: by_name[a] for a in ANCHORS[kind]},
                    "ratio": {k: stackmon[k] / anchors[k] for k in ("p50", "cpu", "rss")}})
    return out


def table(kind: str, rows: list[dict[str, Any]]) -> str:
    who = "the anchors' sum" if kind == "allinone" else "node_exporter"
    lines = [f"| run | load1 | CPU ms/scrape: {who} | stackmon | ratio | RSS MB: {who} | "
             "stackmon | ratio | seq p50 ms: ratio | samples anchors / stackmon |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        a, s, q = r["anchors"], r["stackmon"], r["ratio"]
        lines.append(f"| {i} | {r['load1']:.1f} | {a['cpu']:.2f} | {s['cpu']:.2f} | "
                     f"{q['cpu']:.2f} | {a['rss']:.1f} | {s['rss']:.1f} | {q['rss']:.2f} | "
                     f"{q['p50']:.2f} | {a['samples']:.0f} / {s['samples']:.0f} |")
    med = {k: statistics.median(r["ratio"][k] for r in rows) for k in ("cpu", "rss", "p50")}
    verdict = ", ".join(
        f"{k} {med[k]:.2f} (target <= {t}: {'met' if med[k] <= t else 'missed'})"
        for k, t in TARGETS[kind].items())
    lines.append(f"\nmedian ratio stackmon / {who}: {verdict}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=sorted(ANCHORS))
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--out", help=f"default: {RESULTS}/ratios-<kind>.json")
    args = parser.parse_args()
    rows = runs(args.kind, args.runs)
    print(table(args.kind, rows))
    out = Path(args.out or RESULTS / f"ratios-{args.kind}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"kind": args.kind, "targets": TARGETS[args.kind],
                               "runs": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
