"""`empir reproduce --workers N` on Dask: the plan, its price, and the same files as a serial run.

The parallel runs are small (sweeps of one MNIST grid member on a few dozen
images) and start Dask workers on this machine: they check that a parallel
run writes byte-identical per-image files and the same headline numbers as
a serial one, that a worker killed in the middle of a job is replaced and
the job resumes from its saved state to the same result, and that no
results file is left half-written.
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from empir_lib import cli
from empir_lib.core.errors import EmpirError
from empir_lib.nets import zoo
from empir_lib.studies import parallel, reproduce, schedule

REPO = Path(__file__).resolve().parent.parent
# One grid member's sweeps: FGSM (9 eps, one step each) and PGD (8 eps of 40 steps), per-image .npz files.
ONLY = "sweeps/whitebox-mnist-a1w1"
N, SELECT_N = 40, 20


# --- the plan and its price (no Dask) -----------------------------------------------------------------

def test_every_study_is_planned_once_with_its_dependencies():
    ctx, entries = reproduce.prepare("cifar10", 100, 20, load=False)
    names = [e.name for e in entries]
    assert len(names) == len(set(names))  # one job per results file: two tasks never write the same file
    by = {e.name: e for e in entries}
    # The adaptive row waits for its attack's whole selection, and for nothing else.
    adaptive = by["table2/empir-adaptive-pgd"]
    assert adaptive.after and all(a.startswith("adaptive-select/pgd-") for a in adaptive.after)
    assert set(adaptive.after) == {n for n in names if n.startswith("adaptive-select/pgd-")}
    assert by["eps8/empir-adaptive-pgd"].after == adaptive.after
    # The stochastic rows wait for the EOT curve; the deterministic rows and the fixed-S checks do not.
    assert by["stochastic/pgd-5-255-joint"].after == ("stochastic/eot-samples",)
    assert by["stochastic/pgd-5-255-empir"].after == ()
    assert by["stochastic/suite-5-255-joint-eot8"].after == ()
    # Every dependency comes earlier in the plan, so the serial order respects them.
    pos = {n: i for i, n in enumerate(names)}
    assert all(pos[a] < pos[e.name] for e in entries for a in e.after)
    # Every study is in the plan, but for one whose members a separate command trains and none of which
    # is in the zoo yet (CIFAR-10's seed sets): its jobs are skipped with a line naming that command.
    absent = {s.name for s in reproduce.STUDIES} - {e.study.name for e in entries}
    have = set(zoo.members("cifar10"))
    for study in (s for s in reproduce.STUDIES if s.name in absent):
        assert study.trains and all(set(j["members"]) - have for j in study.jobs(ctx))


def test_list_scheduling_respects_dependencies_and_workers():
    jobs = [{"name": "a", "seconds": 10.0, "after": []}, {"name": "b", "seconds": 10.0, "after": []},
            {"name": "c", "seconds": 5.0, "after": ["a"]}, {"name": "d", "seconds": 1.0, "after": []}]
    assert schedule.wall_time(jobs, 1) == 26.0
    assert schedule.wall_time(jobs, 2) == 15.0  # c waits for a; d fills the other worker
    assert schedule.wall_time(jobs, 32) == 15.0  # never below the longest chain
    assert schedule.wall_time(jobs[:1] + [{"name": "c", "seconds": 5.0, "after": ["a"]}], 2) == 15.0


def test_dry_run_prices_every_job_from_timing_json(tmp_path, capsys):
    (tmp_path / "timing.json").write_text(json.dumps({"steps": {"table2/baseline-paper-fgsm": 12.0,
                                                                "table2/empir-paper-fgsm": 30.0}}))
    assert cli.main(["reproduce", "mnist", "--dry-run", "--workers", "4", "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "table2/baseline-paper-fgsm" in out and " 12.0 s  measured" in out
    assert "2 measured in timing.json" in out
    # Unmeasured Table 2 jobs take the median of the measured ones in their folder.
    assert "table2/baseline-paper-cw" in out and " 21.0 s  estimated" in out
    assert "expected wall time on 1 worker(s)" in out and "expected wall time on 4 worker(s)" in out


def test_the_serial_path_never_imports_dask(tmp_path):
    code = ("import sys; from empir_lib import cli; "
            f"cli.main(['reproduce', 'mnist', '--dry-run', '--out-dir', {str(tmp_path)!r}]); "
            "assert not {'dask', 'distributed'} & set(sys.modules), 'dask was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "mnist", "--workers", "0"], "--workers=0 must be an integer >= 1"),
    (["reproduce", "mnist", "--workers", "-3", "--dry-run"], "--workers=-3 must be an integer >= 1"),
    (["zoo", "build", "--dataset", "mnist", "--workers", "0"], "--workers=0 must be an integer >= 1"),
])
def test_bad_worker_counts_give_one_clear_line(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"empir: error: {message}."], err


def test_an_address_with_no_cluster_gives_one_clear_line(capsys, data_dir):
    # A port nothing listens on: the client cannot connect, and says so in one line.
    assert cli.main(["reproduce", "mnist", "--n", "5", "--only", ONLY, "--address", "127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("empir: error: no Dask scheduler answers at --address '127.0.0.1:9'"), err


def test_a_parallel_run_needs_workers_or_an_address():
    with pytest.raises(EmpirError, match="--workers N"), parallel.connect(None, None):
        pass
    assert parallel.threads_per_task(2, 2) == 1 and parallel.threads_per_task(1, 2) == 2
    assert parallel.threads_per_task(8, 2) == 1


def test_local_workers_run_without_dasks_profiler():
    # The profiler samples the running task's stack every 10 ms; a worker that kept it would cost the plan CPU.
    pytest.importorskip("distributed")
    import dask.config  # noqa: PLC0415 - optional dependency, as in parallel.py

    with parallel.connect(1, None) as (client, slots, _):
        seen = client.run(lambda: (dask.config.get("distributed.worker.profile.enabled"),
                                   dask.config.get("distributed.scheduler.allowed-failures")))
    assert slots == 1 and list(seen.values()) == [(False, parallel.RETRIES)]
    # The README's 'export' for workers started by hand says the same, in dask's environment spelling.
    assert parallel.worker_env() == {"DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False" in readme


# --- real runs on Dask workers ----------------------------------------------------------------------------------

def _files(out: Path) -> dict[str, str]:
    """sha256 of every per-image file under ``out``."""
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*.npz"))}


def _headlines(out: Path) -> dict[str, object]:
    """The numbers of every results file, without its time and provenance."""
    keep = {}
    for p in sorted(out.rglob("*.json")):
        if p.name == "timing.json":
            continue
        r = json.loads(p.read_text())  # also: every results file is whole JSON, none half-written
        keep[str(p.relative_to(out))] = {k: v for k, v in r.items() if k not in ("timing", "provenance", "wall_time_s")}
    return keep


@pytest.fixture(scope="module")
def serial(tmp_path_factory, data_dir_module):
    out = tmp_path_factory.mktemp("serial")
    log = reproduce.reproduce("mnist", N, SELECT_N, out_dir=out, partial_dir=out / "runs", only=ONLY,
                              progress=False)
    assert [e["name"] for e in log] == [f"{ONLY}-s1-fgsm", f"{ONLY}-s1-pgd"] and all(e["ran"] for e in log)
    return out, log


@pytest.fixture(scope="module")
def data_dir_module():
    d = os.environ.get("EMPIR_DATA_DIR")
    if not d or not (Path(d) / "mnist.npz").is_file():
        pytest.skip("EMPIR_DATA_DIR does not hold the offline datasets")
    return Path(d)


def test_two_workers_write_the_same_files_as_a_serial_run(serial, tmp_path):
    out, log = serial
    par = tmp_path / "par"
    plog = parallel.reproduce("mnist", N, SELECT_N, out_dir=par, partial_dir=par / "runs", only=ONLY, workers=2,
                              progress=False)
    assert {e["name"]: e["headline"] for e in plog} == {e["name"]: e["headline"] for e in log}
    assert _files(par) == _files(out) and len(_files(out)) == 2
    assert _headlines(par) == _headlines(out)
    assert not list(par.rglob(".*.tmp")) and not list((par / "runs").glob("*"))  # no half file, no leftover state
    steps = json.loads((par / "timing.json").read_text())["steps"]
    assert set(steps) == {e["name"] for e in log}


def _kill_the_worker_once_its_job_has_saved_state(partial: Path, killed: list) -> None:
    """Wait for the job's first saved chunk (an eps), then SIGKILL the worker process running it.

    The one worker is the one process this test's process spawned for it
    (multiprocessing's ``spawn_main``); its nanny starts a new one.
    """
    deadline = time.time() + 600
    while time.time() < deadline and not partial.is_file():
        time.sleep(0.05)
    for child in psutil.Process().children(recursive=True):
        if "spawn_main" in " ".join(child.cmdline()):
            child.send_signal(signal.SIGKILL)
            killed.append((child.pid, partial.is_file()))


def test_a_killed_worker_is_replaced_and_its_job_resumes_to_the_same_result(serial, tmp_path):
    out, log = serial
    par = tmp_path / "killed"
    name = f"{ONLY}-s1-pgd"
    partial = par / "runs" / f"mnist-{name.replace('/', '-')}.npz"
    killed: list = []
    killer = threading.Thread(target=_kill_the_worker_once_its_job_has_saved_state, args=(partial, killed))
    killer.start()
    plog = parallel.reproduce("mnist", N, SELECT_N, out_dir=par, partial_dir=par / "runs", only=name, workers=1,
                              progress=False)
    killer.join()
    assert killed and killed[0][1], "no worker was killed mid-job"
    assert [e["name"] for e in plog] == [name] and plog[0]["ran"]
    assert plog[0]["headline"] == {e["name"]: e["headline"] for e in log}[name]
    rel = f"{name}.npz"
    assert _files(par)[rel] == _files(out)[rel]
    assert _headlines(par)[f"{name}.json"] == _headlines(out)[f"{name}.json"]
    assert not list(par.rglob(".*.tmp")) and not partial.exists()
