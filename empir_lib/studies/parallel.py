"""``empir reproduce --workers N`` (or ``--address``) and ``empir zoo build --workers N``: the same jobs on Ray.

The plan is the serial plan (:func:`empir_lib.studies.reproduce.prepare`):
each job becomes one Ray task, started as soon as every job it waits for
has finished (:class:`empir_lib.studies.study.Entry`'s ``after``), in plan
order otherwise.  Inside a task a job runs exactly as in a serial run, on
the same images with the same seeds, and saves its partial state after
every chunk (1,000 images of a cascade stage, 500 of a paper-protocol
evaluation, one eps of a sweep; :mod:`empir_lib.core.partial`); a task
whose worker dies is retried (:data:`RETRIES`) and resumes from that state.
Each job writes only its own results files, atomically; ``timing.json`` and
the zoo's manifest are written by this process alone, so two tasks never
write the same file.

**Where things must be.**  The test images travel from this process to the
workers through Ray's object store.  Each worker node needs the same
repository checkout at the same path (the code and the zoo in
``data/models``), the ``ray`` extra installed, the datasets at
``$EMPIR_DATA_DIR`` (a results file records which archive it used), and the
results and partial-state folders (``--out-dir``, ``runs/``) on a file system
every node shares (the adaptive Table 2 rows and the stochastic rows read
what the jobs they waited for wrote).  A results file a worker wrote that
this process cannot see is an error, not a silent gap.

**Threads.**  On one machine (``--workers N``, Ray started embedded), each
task gets ``cores // N`` TensorFlow threads (intra- and inter-op, and
OpenMP's), set through the task's environment before TensorFlow starts, so
that N tasks do not oversubscribe the cores; on a cluster (``--address``)
each task takes one CPU of the cluster and one thread.

Ray is an optional dependency (``pip install -e '.[ray]'``); only this
module imports it, and only when a parallel run starts: the serial path
never loads it.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from tqdm.auto import tqdm

from ..core import provenance
from ..core.errors import EmpirError, check_positive_int
from ..nets import zoo
from . import reproduce as reproduce_mod
from . import schedule, study

BAR = "{l_bar}{bar}| {n_fmt}/{total_fmt} est. s [{elapsed}<{remaining}]{postfix}"
RETRIES = 3  # a task whose worker dies is started again this many times, resuming from its partial state


def _ray():  # the ray module
    try:
        import ray  # noqa: PLC0415 - optional dependency (the 'ray' extra), imported only by a parallel run
    except ImportError:
        raise EmpirError("--workers and --address need Ray: pip install -e '.[ray]' (or make setup).") from None
    return ray


def threads_per_task(workers: int, cores: int | None = None) -> int:
    """TensorFlow threads for each of ``workers`` tasks sharing ``cores`` (default: this machine's) cores."""
    return max(1, (cores or os.cpu_count() or 1) // workers)


def connect(workers: int | None = None, address: str | None = None) -> tuple[object, int, dict]:
    """Start Ray embedded with ``workers`` CPUs, or join the cluster at ``address``; (ray, task slots, info).

    ``info`` holds the threads per task and the dashboard's address (None
    when Ray runs without its dashboard).
    """
    if workers is None and address is None:
        raise EmpirError("a parallel run needs --workers N (Ray on this machine) or --address (a Ray cluster).")
    if workers is not None:
        workers = check_positive_int(workers, "workers")
    if address is not None and not str(address).strip():
        raise EmpirError("--address is empty: pass 'auto' (the cluster 'ray start' began here) or host:port.")
    ray = _ray()
    threads = 1 if address is not None else threads_per_task(workers)
    env = {"TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": str(threads),
           "OMP_NUM_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
           # The workers import this checkout's library (the same path on every node).
           "PYTHONPATH": os.pathsep.join(p for p in (str(provenance.REPO), os.environ.get("PYTHONPATH")) if p)}
    env.update({k: v for k, v in os.environ.items() if k.startswith("EMPIR_")})
    kwargs = {"runtime_env": {"env_vars": env}, "logging_level": "ERROR", "log_to_driver": False}
    try:
        if address is None:
            ctx = ray.init(num_cpus=workers, **kwargs)
        else:
            ctx = ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise EmpirError(f"no Ray cluster answers at --address {address!r} ({str(e).splitlines()[0][:160]}); "
                         "start one with 'ray start --head' or use --workers N on this machine.") from None
    cpus = int(ray.cluster_resources().get("CPU", 1))
    slots = min(cpus, workers) if workers else cpus
    url = getattr(ctx, "dashboard_url", None)
    return ray, slots, {"threads_per_task": threads, "slots": slots, "dashboard": f"http://{url}" if url else None}


def _run_on_worker(study_name: str, job: dict, ctx: study.Context, x: object, y: object) -> tuple:
    """One job in a Ray task: the serial code on the images from the object store; (outcome, seconds, pid)."""
    t0 = time.perf_counter()
    st = {s.name: s for s in reproduce_mod.STUDIES}[study_name]
    outcome = st.run_job(job, dataclasses.replace(ctx, x=x, y=y))
    return outcome, time.perf_counter() - t0, os.getpid()


def reproduce(dataset: str, n: int = 10000, select_n: int = 1000, data_dir: str | os.PathLike | None = None,
              out_dir: str | os.PathLike | None = None, partial_dir: str | os.PathLike = "runs/eval",
              only: str | None = None, workers: int | None = None, address: str | None = None,
              progress: bool = True) -> list[dict]:
    """:func:`empir_lib.studies.reproduce.reproduce` with each job a Ray task; the same files and log."""
    if workers is not None:
        check_positive_int(workers, "workers")
    ctx, entries = reproduce_mod.prepare(dataset, n, select_n, data_dir, out_dir, partial_dir, only, progress=False)
    ray, slots, info = connect(workers, address)
    say = print
    try:
        if info["dashboard"]:
            print(f"Ray dashboard: {info['dashboard']}", flush=True)
        print(f"{dataset}: {len(entries)} jobs on {slots} Ray worker(s), {info['threads_per_task']} thread(s) "
              "per task", flush=True)
        priced = {j["name"]: j["seconds"] for j in schedule.job_seconds(entries, ctx.out_dir / "timing.json")}
        # One bar over the whole plan, in estimated job seconds (schedule.job_seconds), so its ETA means something.
        bar = tqdm(total=round(sum(priced.values())), unit="s", desc=f"{dataset} plan", disable=not progress,
                   mininterval=2, bar_format=BAR)
        say = bar.write if progress else print
        log = _run_plan(ray, entries, ctx, slots, bar, priced, say)
        bar.close()
        return log
    finally:
        ray.shutdown()


def _run_plan(ray: object, entries: list[study.Entry], ctx: study.Context, slots: int, bar: tqdm, priced: dict,
              say: object) -> list[dict]:
    task = ray.remote(num_cpus=1, max_retries=RETRIES, retry_exceptions=False)(_run_on_worker)
    light = dataclasses.replace(ctx, x=None, y=None)
    x_ref, y_ref = ray.put(ctx.x), ray.put(ctx.y)
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
                running[task.remote(e.study.name, job, light, x_ref, y_ref)] = e
        if not running:
            continue
        finished, _ = ray.wait(list(running), num_returns=1)
        for ref in finished:
            e = running.pop(ref)
            try:
                outcome, secs, _ = ray.get(ref)
            except ray.exceptions.RayTaskError as err:
                cause = getattr(err, "cause", None) or err
                raise EmpirError(f"{e.name} failed in a Ray task: {cause}") from None
            except ray.exceptions.WorkerCrashedError:
                raise EmpirError(f"{e.name}: its Ray worker died {RETRIES + 1} times; rerun to resume it.") from None
            path = Path(ctx.out_dir) / f"{e.name}.json"
            if not path.is_file():
                raise EmpirError(f"{e.name}: the worker wrote {path}, which this machine cannot see; put --out-dir "
                                 "and runs/ on a file system every node shares.")
            log.append(reproduce_mod.report(ctx, e.name, outcome, secs, t_start, say))
            done.add(e.name)
            bar.update(round(priced.get(e.name, 0)))
            bar.set_postfix_str(f"{len(done)}/{len(entries)} jobs", refresh=False)
    return log


def build_zoo(dataset: str, epochs: int | None = None, data_dir: str | os.PathLike | None = None,
              defended: bool = False, workers: int | None = None, address: str | None = None) -> list[str]:
    """:func:`empir_lib.nets.zoo.build_zoo` with one Ray task per member: same seeds, same files.

    Each task trains its member and writes the member's file into the zoo;
    this process adds the manifest entries as the tasks finish.
    """
    if workers is not None:
        check_positive_int(workers, "workers")
    todo = zoo.to_build(dataset, epochs, defended)
    if not todo:
        print(f"{dataset}: every member is already in the zoo", flush=True)
        return []
    ray, slots, info = connect(workers, address)
    try:
        if info["dashboard"]:
            print(f"Ray dashboard: {info['dashboard']}", flush=True)
        task = ray.remote(num_cpus=1, max_retries=RETRIES, retry_exceptions=False)(zoo.train_and_store)
        refs = {task.remote(t, data_dir, "runs", False): t["id"] for t in todo}
        done = []
        for _ in tqdm(range(len(refs)), desc=f"{dataset} zoo", unit="member"):
            [ref], _ = ray.wait(list(refs), num_returns=1)
            refs.pop(ref)
            try:
                mid, entry = ray.get(ref)
            except ray.exceptions.RayTaskError as err:
                raise EmpirError(f"training failed in a Ray task: {getattr(err, 'cause', None) or err}") from None
            zoo.register({mid: entry})
            print(zoo.build_line(mid, entry), flush=True)
            done.append(mid)
        return done
    finally:
        ray.shutdown()
