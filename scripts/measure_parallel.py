"""Measure `empir reproduce` on Dask workers against the serial run, and price the three datasets' plans.

    python scripts/measure_parallel.py price      # data/results/parallel/dry-run.json
    python scripts/measure_parallel.py local      # data/results/parallel/local.json: serial, 1 and 2 workers
    python scripts/measure_parallel.py local --n 1000 --select-n 200 --only sweeps/whitebox-mnist-a1w
                                                  # a larger plan, where start-up weighs less
    python scripts/measure_parallel.py cluster    # data/results/parallel/cluster.json: a two-node local cluster

``local`` and ``cluster`` take the plan's options after their name.
``local`` runs one small plan (sweeps of two MNIST grid members on a few dozen
images) three times as separate ``empir reproduce`` commands into fresh
folders: serial, ``--workers 1`` and ``--workers 2``, and records each wall
time (Python, TensorFlow and Dask start-up included), the sha256 of every
per-image file and whether they all agree.  ``cluster`` starts a Dask
scheduler and two worker nodes as separate processes (``dask scheduler``,
``dask worker --nthreads 1``), runs the same plan with ``--address``, compares
its files with a serial run's, and stops the three processes by their ids.  Every file records its provenance
and the load average of the machine, which other jobs share.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from empir_lib.core import files, provenance
from empir_lib.core.files import write_json
from empir_lib.studies import parallel, reproduce, schedule

OUT = files.REPO / "data" / "results" / "parallel"
PLAN = ["mnist", "--n", "40", "--select-n", "20", "--only", "sweeps/whitebox-mnist-a1w1"]
DASK = str(Path(sys.executable).with_name("dask"))
PORT = 48786


def _write(name: str, record: dict, command: str) -> None:
    record = {**record, "load_average": os.getloadavg(), "provenance": provenance.record(command)}
    write_json(OUT / name, record)
    print(f"wrote {OUT / name}")


def price(*_: str) -> None:
    out = {}
    for dataset in reproduce.DATASETS:
        ctx, entries = reproduce.prepare(dataset, load=False)
        priced = schedule.price(entries, ctx.out_dir / "timing.json", (1, 8, 32))
        out[dataset] = {k: v for k, v in priced.items() if k != "jobs"} | {"jobs": len(priced["jobs"])}
        print(dataset, out[dataset])
    _write("dry-run.json", {"datasets": out}, "python scripts/measure_parallel.py price")


def _plan(options: tuple[str, ...]) -> list[str]:
    # The per-run start-up (Python, TensorFlow, Dask's workers) is a fixed cost of tens of seconds, so the
    # overhead of one worker is only meaningful on a plan whose jobs take minutes: `local` and `cluster`
    # take the plan's options after their name (they replace PLAN's after the dataset).
    return [PLAN[0], *options] if options else PLAN


def _run(args: list[str], out: Path, plan: list[str] = PLAN) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "empir_lib.cli", "reproduce", *plan, "--out-dir", str(out), *args],
                          capture_output=True, text=True, cwd=files.REPO)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{args} failed:\n{proc.stderr[-3000:]}")
    hashes = {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*.npz"))
              if "runs" not in p.parts}
    # The jobs' own seconds (timing.json: measured around each job, in the worker for a parallel run); the rest
    # of the wall time is start-up (Python, TensorFlow, the test images, Dask and its workers) and waiting.
    steps = json.loads((out / "timing.json").read_text())["steps"]
    return {"args": args, "wall_s": round(wall, 1), "job_s": steps, "jobs_total_s": round(sum(steps.values()), 1),
            "files": hashes}


def local(*options: str) -> None:
    plan = _plan(options)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {name: _run(args, Path(tmp) / name, plan) for name, args in
                (("serial", []), ("workers_1", ["--workers", "1"]), ("workers_2", ["--workers", "2"]))}
    same = all(r["files"] == runs["serial"]["files"] for r in runs.values())
    overhead = runs["workers_1"]["wall_s"] / runs["serial"]["wall_s"] - 1
    job_overhead = runs["workers_1"]["jobs_total_s"] / runs["serial"]["jobs_total_s"] - 1
    _write("local.json", {"plan": plan, "runs": runs, "files_identical": same,
                          "overhead_1_worker_wall": round(overhead, 4),
                          "overhead_1_worker_jobs": round(job_overhead, 4),
                          "speedup_2_workers": round(runs["serial"]["wall_s"] / runs["workers_2"]["wall_s"], 3),
                          "cores": os.cpu_count()}, " ".join(["python scripts/measure_parallel.py local", *options]))


def cluster(*options: str) -> None:
    plan = _plan(options)
    address = f"127.0.0.1:{PORT}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen([DASK, "scheduler", "--port", str(PORT), "--dashboard-address", ":0"], **quiet)]
    try:
        for i in range(2):  # two nodes: one worker process, one thread each, as 'dask worker' on two machines
            procs.append(subprocess.Popen([DASK, "worker", address, "--nworkers", "1", "--nthreads", "1",
                                           "--name", f"node{i}", "--no-dashboard"],
                                          env={**os.environ, **parallel.worker_env()}, **quiet))
        _wait_for_workers(address, 2)
        with tempfile.TemporaryDirectory() as tmp:
            serial = _run([], Path(tmp) / "serial", plan)
            two = _run(["--address", address], Path(tmp) / "cluster", plan)
        _write("cluster.json", {"plan": plan, "nodes": 2, "threads_per_node": 1, "serial": serial, "cluster": two,
                                "files_identical": serial["files"] == two["files"]},
               " ".join(["python scripts/measure_parallel.py cluster", *options]))
    finally:
        for p in reversed(procs):  # stop the processes we started, by their ids
            p.terminate()
            p.wait(120)


def _wait_for_workers(address: str, n: int, timeout: float = 300) -> None:
    code = f"from distributed import Client; c = Client('{address}', timeout=20); print(len(c.nthreads()))"
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip().splitlines()[-1:] == [str(n)]:
            return
        time.sleep(5)
    raise SystemExit(f"the Dask cluster at {address} did not reach {n} workers in {timeout:.0f} s")


if __name__ == "__main__":
    {"price": price, "local": local, "cluster": cluster}[sys.argv[1]](*sys.argv[2:])
