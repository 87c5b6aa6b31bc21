"""A study of ``empir reproduce``: its jobs, how to run one, and what each must wait for, in one record.

Every study that writes results files under ``data/results/<dataset>/``
(Table 2 and the paper-protocol sweeps, the worst-case suite, the sweeps
over precision, the other defences' rows, the stochastic ensemble under EOT)
is a :class:`Study`: ``jobs(ctx)`` lists its jobs (dicts with a unique
``name``, the results file's path without ``.json``) in the order they run,
and ``run_job(job, ctx)`` runs one unless its results file already holds the
same configuration, returning an :class:`Outcome`: the record, whether it
ran, and its headline number (the one a log line prints).

:func:`plan` turns a list of studies into the plan ``empir reproduce`` runs:
one :class:`Entry` per job, with the names of the jobs it must wait for
(``needs``: the adaptive Table 2 row waits for its objective selection; the
stochastic rows wait for the EOT-samples curve).  The serial run
(:func:`empir_lib.studies.reproduce.reproduce`) runs the entries in order;
the parallel one (:mod:`empir_lib.studies.parallel`) runs each entry as soon
as every job it waits for has finished.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True)
class Context:
    """What every job of one ``empir reproduce`` invocation shares: the data, the folders, the provenance."""

    dataset: str
    n: int
    select_n: int
    x: np.ndarray | None
    y: np.ndarray | None
    out_dir: Path
    partial_dir: Path
    progress: bool = True
    prov: dict | None = None


class Outcome(NamedTuple):
    """One job's result: its record (as written), whether it ran (False: kept), and its headline number."""

    record: dict
    ran: bool
    headline: float


def _no_needs(job: dict) -> tuple[str, ...]:
    return ()


def _as_planned(job: dict, ctx: Context) -> dict | None:
    return job


@dataclass(frozen=True)
class Study:
    """One study: its jobs, how one runs, what it waits for, and which command trains its members.

    ``needs(job)``: name prefixes of the jobs that must finish before ``job``
    starts.  ``ready(job, ctx)``: the job as it runs, filled in from what the
    jobs it waited for wrote (None: nothing to run, e.g. the adaptive row
    when its selection was not run).  ``trains``: for a study whose members
    are trained by a separate command, that command (``{dataset}`` filled
    in); a job whose members are not in the zoo is then skipped with a line
    naming it, where otherwise the whole plan is refused up front.
    """

    name: str
    jobs: Callable[[Context], list[dict]]
    run_job: Callable[[dict, Context], Outcome]
    needs: Callable[[dict], tuple[str, ...]] = _no_needs
    ready: Callable[[dict, Context], dict | None] = _as_planned
    trains: str | None = None


@dataclass(frozen=True)
class Entry:
    """One planned job: its study, the job, and the names of the planned jobs it waits for."""

    study: Study
    job: dict
    after: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return self.job["name"]


def plan(studies: list[Study], ctx: Context, only: str | None, have: set[str] | dict) -> tuple[list[Entry], list[str]]:
    """The entries to run (in serial order) and one line per job skipped for members not in the zoo (``have``).

    ``only`` keeps the jobs whose name starts with it; a job it leaves out is
    not waited for (its results file, if any, is what the later job reads).
    """
    entries, skipped = [], []
    for study in studies:
        for job in study.jobs(ctx):
            if only and not job["name"].startswith(only):
                continue
            missing = [m for m in job.get("members", []) if m not in have] if study.trains else []
            if missing:
                skipped.append(f"{ctx.dataset} {job['name']:40s} skipped: the zoo lacks {', '.join(missing)} "
                               f"('{study.trains.format(dataset=ctx.dataset)}' trains them)")
            else:
                entries.append(Entry(study, job))
    names = [e.name for e in entries]
    out = []
    for i, e in enumerate(entries):
        prefixes = e.study.needs(e.job)
        out.append(Entry(e.study, e.job, tuple(n for n in names[:i] if prefixes and n.startswith(prefixes))))
    return out, skipped


def run(entry: Entry, ctx: Context) -> Outcome | None:
    """Run one entry (None when its study's ``ready`` says there is nothing to run)."""
    job = entry.study.ready(entry.job, ctx)
    return None if job is None else entry.study.run_job(job, ctx)
