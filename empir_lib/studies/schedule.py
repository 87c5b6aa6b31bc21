"""Pricing a plan: each job's seconds, the total, and the wall time expected on N workers (``--dry-run``).

A job's seconds are **measured** when ``data/results/<dataset>/timing.json``
holds them (the last run that computed the job, on the machine that ran it),
and **estimated** otherwise: the median of the measured jobs in the same
folder (``table2/``, ``suite/``, ...), else of all measured jobs, else
:data:`DEFAULT_S`.

The wall time on N workers is a list-scheduling estimate (Graham 1966):
jobs are taken in plan order, each starts on the worker that frees first,
but not before every job it waits for has finished; each job runs as long
as its seconds say, on one worker.  It ignores start-up (Ray and TensorFlow
take seconds a worker) and assumes each worker is as fast as the machine
that measured the times; it is a bound to plan with, not a promise.
"""
from __future__ import annotations

import heapq
import json
from pathlib import Path
from statistics import median

from .study import Entry

DEFAULT_S = 60.0


def job_seconds(entries: list[Entry], timing_path: str | Path) -> list[dict]:
    """``{name, seconds, source, after}`` per entry, ``source`` 'measured' or 'estimated'."""
    path = Path(timing_path)
    steps = json.loads(path.read_text())["steps"] if path.is_file() else {}
    by_folder: dict[str, list[float]] = {}
    for name, s in steps.items():
        by_folder.setdefault(name.split("/")[0], []).append(s)
    overall = median(steps.values()) if steps else DEFAULT_S
    out = []
    for e in entries:
        if e.name in steps:
            secs, source = float(steps[e.name]), "measured"
        else:
            near = by_folder.get(e.name.split("/")[0])
            secs, source = float(median(near) if near else overall), "estimated"
        out.append({"name": e.name, "seconds": round(secs, 1), "source": source, "after": list(e.after)})
    return out


def wall_time(jobs: list[dict], workers: int) -> float:
    """The list-scheduling wall time of ``jobs`` (from :func:`job_seconds`) on ``workers`` workers."""
    free = [0.0] * max(1, workers)
    finish: dict[str, float] = {}
    for j in jobs:
        start = max([heapq.heappop(free)] + [finish.get(a, 0.0) for a in j["after"]])
        finish[j["name"]] = start + j["seconds"]
        heapq.heappush(free, finish[j["name"]])
    return round(max(finish.values(), default=0.0), 1)


def price(entries: list[Entry], timing_path: str | Path, workers: tuple[int, ...] = (1,)) -> dict:
    """The priced plan: per-job seconds, how many were measured, the total and the wall time per worker count."""
    jobs = job_seconds(entries, timing_path)
    return {"jobs": jobs, "measured": sum(j["source"] == "measured" for j in jobs),
            "total_s": round(sum(j["seconds"] for j in jobs), 1),
            "wall_s": {str(w): wall_time(jobs, w) for w in workers},
            "method": "list scheduling in plan order, dependencies respected, one job per worker at a time"}


def table(priced: dict) -> str:
    """Plain text: one line per job, then the total and the expected wall time per worker count."""
    lines = [f"{j['name']:52s} {j['seconds']:9.1f} s  {j['source']}" for j in priced["jobs"]]
    lines.append(f"{len(priced['jobs'])} jobs ({priced['measured']} measured in timing.json, the rest estimated): "
                 f"{priced['total_s']:.0f} s of job time ({priced['total_s'] / 3600:.1f} h)")
    for w, s in priced["wall_s"].items():
        lines.append(f"expected wall time on {w} worker(s): {s:.0f} s ({s / 3600:.1f} h; {priced['method']})")
    return "\n".join(lines)
