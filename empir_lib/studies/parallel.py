"""``empir reproduce --workers N`` (or ``--address``) and ``empir zoo build --workers N``: the same jobs on Dask.

The plan is the serial plan (:func:`empir_lib.studies.reproduce.prepare`):
each job becomes one task of Dask's distributed scheduler, submitted as soon
as every job it waits for has finished (:class:`empir_lib.studies.study.Entry`'s
``after``), in plan order otherwise.  Inside a task a job runs exactly as in a
serial run, on the same images with the same seeds, and saves its partial
state after every chunk (1,000 images of a cascade stage, 500 of a
paper-protocol evaluation, one eps of a sweep; :mod:`empir_lib.core.partial`);
a task whose worker dies is run again on another worker (up to
:data:`RETRIES` times) and resumes from that state.  Each job writes only its
own results files, atomically; ``timing.json`` and the zoo's manifest are
written by this process alone, so two tasks never write the same file.

**Why Dask.**  Ray was the first choice; its current release (2.60) cannot
start a node on a machine as loaded as the book's 2-core CPU (its raylet gives
the dashboard agent a fixed 15 s to start, ray-project/ray#65983), while Dask's
``LocalCluster`` starts in seconds there.  Dask's scheduler does what this
needs: task retries when a worker dies, a dashboard, and a cluster started with
two commands (``dask scheduler``, ``dask worker``).

**Where things must be.**  Each worker reads the test images itself (once
per worker process), so a worker that dies loses nothing the scheduler
must keep.  Each worker machine needs the same
repository checkout at the same path (the code and the zoo in
``data/models``), installed with the ``parallel`` extra, the datasets at
``$EMPIR_DATA_DIR`` (a results file records which archive it used), and the
results and partial-state folders (``--out-dir``, ``runs/``) on a file system
every machine shares (the adaptive Table 2 rows and the stochastic rows read
what the jobs they waited for wrote).  A results file a worker wrote that
this process cannot see is an error, not a silent gap.

**Threads.**  On one machine (``--workers N``), each worker process runs one
task at a time with ``cores // N`` TensorFlow threads (intra- and inter-op,
and OpenMP's, set in its environment before TensorFlow starts), so that N
tasks do not oversubscribe the cores; on a cluster (``--address``) each
worker thread runs one task with one TensorFlow thread.

Dask is an optional dependency (``pip install -e '.[parallel]'``); only this
module imports it, and only when a parallel run starts: the serial path never
loads it.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import tensorflow as tf
from tqdm.auto import tqdm

from ..core import memo
from ..core.errors import EmpirError, check_positive_int
from ..nets import build, data, zoo
from . import reproduce as reproduce_mod
from . import schedule, study

BAR = "{l_bar}{bar}| {n_fmt}/{total_fmt} est. s [{elapsed}<{remaining}]{postfix}"
RETRIES = 3  # a task whose worker dies is started again (on another worker) up to this many times
CONNECT_TIMEOUT_S = 20
# Dask's worker profiler wakes every 10 ms to walk the running task's Python stack, holding the GIL, for a
# dashboard profile of tasks that are whole jobs with their own progress: CPU the 2-core machine needs. With it
# off, one worker's jobs took no longer than the serial run's (data/results/parallel/local.json).
DASK_CONFIG = {"distributed.scheduler.allowed-failures": RETRIES, "distributed.worker.profile.enabled": False}


def worker_env() -> dict[str, str]:
    """DASK_CONFIG's worker settings as the environment of a ``dask worker`` started by hand (the README's recipe)."""
    return {"DASK_" + k.upper().replace(".", "__").replace("-", "_"): str(v) for k, v in DASK_CONFIG.items()
            if k.startswith("distributed.worker.")}


def _distributed():  # the distributed module
    try:
        import distributed  # noqa: PLC0415 - optional dependency (the 'parallel' extra), imported by a parallel run
    except ImportError:
        raise EmpirError("--workers and --address need Dask: pip install -e '.[parallel]' (or make setup).") from None
    return distributed


def threads_per_task(workers: int, cores: int | None = None) -> int:
    """TensorFlow threads for each of ``workers`` tasks sharing ``cores`` (default: this machine's) cores."""
    return max(1, (cores or os.cpu_count() or 1) // workers)


@contextmanager
def connect(workers: int | None = None, address: str | None = None) -> Iterator[tuple]:
    """Start ``workers`` Dask worker processes here, or join the scheduler at ``address``: (client, slots, info).

    ``info`` holds the threads per task and the dashboard's address (None when
    the dashboard is not installed).  Closed, and local workers stopped, on exit.
    """
    if workers is None and address is None:
        raise EmpirError("a parallel run needs --workers N (workers on this machine) or --address (a Dask scheduler).")
    if workers is not None:
        workers = check_positive_int(workers, "workers")
    if address is not None and not str(address).strip():
        raise EmpirError("--address is empty: pass the Dask scheduler's host:port (e.g. 10.0.0.1:8786).")
    dd = _distributed()
    dask_config = _distributed_config()
    threads = 1 if address is not None else threads_per_task(workers)
    cluster = None
    with dask_config.set(DASK_CONFIG):  # local workers inherit it (the nanny passes this config on)
        try:
            if address is None:
                env = {"TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": str(threads),
                       "OMP_NUM_THREADS": str(threads)}
                dashboard = ":0" if importlib.util.find_spec("bokeh") else None
                cluster = dd.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, env=env,
                                          dashboard_address=dashboard, silence_logs=logging.ERROR, memory_limit=0)
                client = dd.Client(cluster)
            else:
                client = dd.Client(address, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as e:
            if cluster is not None:
                cluster.close()
            where = f"--address {address!r}" if address is not None else "this machine"
            raise EmpirError(f"no Dask scheduler answers at {where} ({str(e).splitlines()[0][:160]}); start one "
                             "with 'dask scheduler' and 'dask worker', or use --workers N here.") from None
        try:
            slots = sum(client.nthreads().values())
            if not slots:
                raise EmpirError(f"the Dask scheduler at {address} has no workers; start some with "
                                 f"'dask worker {address} --nthreads 1'.")
            slots = min(slots, workers) if workers else slots
            link = client.dashboard_link if importlib.util.find_spec("bokeh") else None
            yield client, slots, {"threads_per_task": threads, "slots": slots, "dashboard": link}
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def _distributed_config():  # dask.config, imported with distributed
    _distributed()
    import dask.config  # noqa: PLC0415 - optional dependency, as above

    return dask.config


def _images(dataset: str, data_dir: str | os.PathLike | None, n: int) -> tuple:
    # Read once per worker process: the jobs of a plan share the dataset's first n test images.
    return memo.get("parallel.images", (dataset, str(data_dir), n), lambda: data.load(dataset, "test", data_dir, n),
                    1)


def _run_on_worker(study_name: str, job: dict, ctx: study.Context, data_dir: str | os.PathLike | None,
                   threads: int) -> tuple:
    """One job in a task: the serial code on the same test images; (outcome, seconds, pid)."""
    try:  # a cluster's workers were started without our environment: set TensorFlow's threads here
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # this worker's TensorFlow has started already, with the threads its environment set
    t0 = time.perf_counter()
    st = {s.name: s for s in reproduce_mod.STUDIES}[study_name]
    x, y = _images(ctx.dataset, data_dir, ctx.n)
    outcome = st.run_job(job, dataclasses.replace(ctx, x=x, y=y))
    return outcome, time.perf_counter() - t0, os.getpid()


def reproduce(dataset: str, n: int = 10000, select_n: int = 1000, data_dir: str | os.PathLike | None = None,
              out_dir: str | os.PathLike | None = None, partial_dir: str | os.PathLike = "runs/eval",
              only: str | None = None, workers: int | None = None, address: str | None = None,
              progress: bool = True) -> list[dict]:
    """:func:`empir_lib.studies.reproduce.reproduce` with each job a Dask task; the same files and log."""
    if workers is not None:
        check_positive_int(workers, "workers")
    ctx, entries = reproduce_mod.prepare(dataset, n, select_n, data_dir, out_dir, partial_dir, only, progress=False)
    with connect(workers, address) as (client, slots, info):
        if info["dashboard"]:
            print(f"Dask dashboard: {info['dashboard']}", flush=True)
        print(f"{dataset}: {len(entries)} jobs on {slots} worker(s), {info['threads_per_task']} thread(s) per task",
              flush=True)
        priced = {j["name"]: j["seconds"] for j in schedule.job_seconds(entries, ctx.out_dir / "timing.json")}
        # One bar over the whole plan, in estimated job seconds (schedule.job_seconds), so its ETA means something.
        bar = tqdm(total=round(sum(priced.values())), unit="s", desc=f"{dataset} plan", disable=not progress,
                   mininterval=2, bar_format=BAR)
        try:
            return _run_plan(client, entries, ctx, data_dir, slots, info["threads_per_task"], bar, priced,
                             bar.write if progress else print)
        finally:
            bar.close()


def _run_plan(client: object, entries: list[study.Entry], ctx: study.Context, data_dir: str | os.PathLike | None,
              slots: int, threads: int, bar: tqdm, priced: dict, say: Callable[[str], object]) -> list[dict]:
    dd = _distributed()
    light = dataclasses.replace(ctx, x=None, y=None)
    pending, running, done, log = list(entries), {}, set(), []
    t_start = time.perf_counter()
    while pending or running:
        for e in list(pending):
            if len(running) >= slots:
                break
            if all(a in done for a in e.after):
                pending.remove(e)
                job = e.study.ready(e.job, ctx)  # here: it reads what the jobs it waited for wrote
                if job is None:
                    done.add(e.name)
                    continue
                fut = client.submit(_run_on_worker, e.study.name, job, light, data_dir, threads, pure=False,
                                    key=f"{e.name}-{uuid.uuid4().hex[:8]}")
                running[fut] = e
        if not running:
            continue
        finished, _ = dd.wait(list(running), return_when="FIRST_COMPLETED")
        for fut in finished:
            e = running.pop(fut)
            try:
                outcome, secs, _ = fut.result()
            except dd.KilledWorker:
                raise EmpirError(f"{e.name}: its worker died {RETRIES + 1} times; rerun to resume it.") from None
            except EmpirError as err:
                raise EmpirError(f"{e.name}: {err}") from None
            path = Path(ctx.out_dir) / f"{e.name}.json"
            if not path.is_file():
                raise EmpirError(f"{e.name}: the worker wrote {path}, which this machine cannot see; put --out-dir "
                                 "and runs/ on a file system every machine shares.")
            log.append(reproduce_mod.report(ctx, e.name, outcome, secs, t_start, say))
            done.add(e.name)
            bar.update(round(priced.get(e.name, 0)))
            bar.set_postfix_str(f"{len(done)}/{len(entries)} jobs", refresh=False)
    reproduce_mod.finish(ctx, log)
    return log


def build_zoo(dataset: str, epochs: int | None = None, data_dir: str | os.PathLike | None = None,
              defended: bool = False, workers: int | None = None, address: str | None = None,
              seed_sets: bool = False) -> list[str]:
    """:func:`empir_lib.nets.build.build_zoo` with one task per member: same seeds, same files.

    Each task trains its member and writes the member's file into the zoo;
    this process adds the manifest entries as the tasks finish.
    """
    if workers is not None:
        check_positive_int(workers, "workers")
    todo = build.to_build(dataset, epochs, defended, seed_sets=seed_sets)
    if not todo:
        print(f"{dataset}: every member is already in the zoo", flush=True)
        return []
    with connect(workers, address) as (client, slots, info):
        dd = _distributed()
        if info["dashboard"]:
            print(f"Dask dashboard: {info['dashboard']}", flush=True)
        futures = [client.submit(build.train_and_store, t, data_dir, "runs", False, pure=False) for t in todo]
        done = []
        for fut in tqdm(dd.as_completed(futures), total=len(futures), desc=f"{dataset} zoo", unit="member"):
            try:
                mid, entry = fut.result()
            except dd.KilledWorker:
                raise EmpirError(f"a training task's worker died {RETRIES + 1} times; rerun to resume.") from None
            zoo.register({mid: entry})
            print(build.build_line(mid, entry), flush=True)
            done.append(mid)
        return done
