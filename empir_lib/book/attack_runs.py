"""Running a student's attack on a task, and grading attack source in a worker process.

:func:`run` is the one path every attack takes: the chapter's self-check (the
student's function in the notebook's own process, on public images) and the
grader (the function in a worker, :class:`empir_lib.book.sandbox.RemoteFunction`,
on hidden images, with the task's wall-clock limit enforced by killing the
worker).  :func:`grade_source` grades a file of attack code the way
``empir assignments grade`` grades a notebook's, and :func:`record` writes the
measurements of the reference and the plain attacks to
``data/results/assignments/attack_tasks.json``.
"""
from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..core import files, provenance, tables
from ..core.files import atomic_write
from . import attack_solutions
from .attack_tasks import Defence, Outcome, Task, ensemble, fingerprint, images, judge, task
from .sandbox import RemoteError, RemoteFunction, Sandbox, WorkerError

RECORD = files.REPO / "data" / "results" / "assignments" / "attack_tasks.json"
PUBLIC_N = {"mnist": 20, "cifar10": 20}  # images of the self-check in the chapter (nbval's time)


def run(t: Task, attack: Callable, hidden: bool, seed: int = 0, n: int | None = None) -> Outcome:
    """Attack the task's images with ``attack(defence, x, y, eps)`` and judge the answer; never raises."""
    x, y = images(t, hidden, seed, n if n is not None or hidden else PUBLIC_N[t.dataset])
    ens = ensemble(t)
    before = fingerprint(ens)
    defence = Defence(t, ens, len(x))
    if isinstance(attack, RemoteFunction):
        attack = attack.limited(t.seconds)
    start, x_adv, error = time.monotonic(), None, ""
    try:
        x_adv = attack(defence if isinstance(attack, RemoteFunction) else LocalDefence(defence), x.copy(), y.copy(),
                       float(t.eps))
    except WorkerError as e:
        error = (f"your attack ran past its {t.seconds:g} s limit and was stopped" if e.kind == "timeout"
                 else f"your attack's process failed: {e}")
    except RemoteError as e:
        error = f"your attack raised {type(e).__name__}: {e}"
    except Exception as e:  # the student's function failing in this process is a result, not a crash
        error = f"your attack raised {type(e).__name__}: {e}"
    seconds = time.monotonic() - start
    if not error and seconds > t.seconds:
        error = f"your attack took {seconds:.0f} s, over its {t.seconds:g} s limit"
    return judge(t, defence, x, y, x_adv, seconds, error, before, seed, "hidden" if hidden else "public")


class LocalDefence:
    """The defence for an attack run in this process (the self-check): the same methods and data, read-only."""

    __slots__ = ("_d",)

    def __init__(self, defence: Defence):
        object.__setattr__(self, "_d", defence)

    def __getattr__(self, name: str) -> object:
        methods, attrs = object.__getattribute__(self, "_d").lend_to_sandbox()
        if name in attrs:
            return attrs[name]
        if name in methods:
            return getattr(object.__getattribute__(self, "_d"), name)
        raise AttributeError(f"the defence has no attribute {name!r}; it offers {', '.join([*attrs, *methods])}.")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("the defence is read-only.")


def grade_source(source: str, function: str, t: Task, seed: int, n: int | None = None,
                 log: str | Path | None = None) -> Outcome:
    """Run ``source`` in a fresh worker and grade its function ``function`` on ``t``'s hidden images."""
    with tempfile.TemporaryDirectory() as tmp:
        with Sandbox(tmp, log or Path(tmp) / "worker.log") as box:
            try:
                box.run_source(source, 120)
                fn = box.lookup(function)
            except (WorkerError, NameError, TypeError) as e:
                return Outcome(t.name, 0.0, f"\u2717 {t.name}: 0 credit: your code did not load: {e}.", error=str(e))
            if not isinstance(fn, RemoteFunction):
                return Outcome(t.name, 0.0, f"\u2717 {t.name}: 0 credit: {function} is not a function.",
                               error="not a function")
            return run(t, fn, True, seed, n)


SOLUTIONS = {"reference": "reference_attack", "plain FGSM": "plain_fgsm", "plain PGD": "plain_pgd"}
# Wrong and malicious submissions, graded in the record so that the feedback a student sees is on file.
BROKEN = {
    "returns x unchanged": "def attack(defence, x, y, eps):\n    return x.copy()",
    "exceeds eps": "def attack(defence, x, y, eps):\n    return np.clip(x + 2 * eps, 0, 1).astype(np.float32)",
    "returns NaN": "def attack(defence, x, y, eps):\n    return x * np.nan",
    "loops forever": "def attack(defence, x, y, eps):\n    while True:\n        pass",
    "modifies the model": "def attack(defence, x, y, eps):\n    defence.members = 0\n    return x",
    "over budget": "def attack(defence, x, y, eps):\n    for _ in range(10**6):\n        defence.loss_gradient(x, y)\n"
                   "    return x",
}
BROKEN_TASK = {"name": "mnist-distill", "n": 10, "seconds": 10, "backward_per_image": 5}


def record(tasks: Sequence[Task], seed: int, path: str | Path = RECORD) -> dict:
    """Grade the reference solution and the plain attacks on every task; write what was measured."""
    source = Path(attack_solutions.__file__).read_text(encoding="utf-8")
    rows, broken = [], []
    for t in tasks:
        for label, fn in SOLUTIONS.items():
            start = time.monotonic()
            out = grade_source(source, fn, t, seed)
            rows.append({"task": t.name, "attack": label, **{k: v for k, v in asdict(out).items() if k != "task"},
                         "grading_seconds": round(time.monotonic() - start, 1)})
            print(f"{t.name:20s} {label:11s} credit {out.credit:.2f}  {out.message}", flush=True)
    small = dataclasses.replace(task(BROKEN_TASK["name"]), seconds=BROKEN_TASK["seconds"],
                                backward_per_image=BROKEN_TASK["backward_per_image"])
    for label, body in BROKEN.items():
        out = grade_source("import numpy as np\n\n" + body, "attack", small, seed, BROKEN_TASK["n"])
        broken.append({"submission": label, "source": body, "credit": out.credit, "feedback": out.message})
        print(f"{label:20s} {out.message}", flush=True)
    doc = {"tasks": [{"name": t.name, "title": t.title, "eps": t.eps, "committed": t.committed, "margin": t.margin,
                      "target": t.target, "result_file": f"data/results/{t.result}", "n_hidden": t.n_hidden,
                      "budget_per_image": {"forward": t.forward_per_image, "backward": t.backward_per_image},
                      "seconds": t.seconds} for t in tasks],
           "seed": seed, "runs": rows,
           "broken_submissions": {"task": BROKEN_TASK, "graded": broken},
           "provenance": provenance.record("empir assignments attacks")}
    atomic_write(Path(path), lambda p: Path(p).write_text(_json(doc), encoding="utf-8"))
    return doc


def _json(doc: dict) -> str:
    return json.dumps(doc, indent=1, default=lambda o: float(o) if isinstance(o, np.floating) else str(o)) + "\n"


def tasks_table(tasks: Sequence[Task]) -> str:
    """The tasks as the chapter lists them: threat model, budget, target and where the target comes from.

    Six columns, so that the table fits the book's page at 1280 px (tests/test_book_browser.py).
    """
    rows = [{"task": f"`{t.name}`", "defence": t.title, "eps": f"{t.eps:.4g}",
             "budget": f"{t.forward_per_image} / {t.backward_per_image}, {t.seconds:g} s",
             "hidden": t.n_hidden,
             "target": f"{t.committed:.3f} + {t.margin:g} = {t.target:.3f} (`data/results/{t.result}`)"}
            for t in tasks]
    return tables.markdown_table(rows, ["task", "defence", "eps", "budget", "hidden", "target"],
                                 ["task", "defence", "L-inf eps",
                                  "budget per image: forward / backward passes, and seconds on 2 cores",
                                  "hidden images", "target: committed result + margin (its file)"])


def record_table(path: str | Path = RECORD) -> str:
    """The committed record of :func:`record` as a table: each attack's robust accuracy and credit per task."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    rows = [{"task": f"`{r['task']}`", "attack": r["attack"], "clean": f"{r['clean']:.3f}",
             "robust": "—" if r["error"] else f"{r['robust']:.3f}", "target": f"{r['target']:.3f}",
             "credit": f"{100 * r['credit']:.0f}%", "passes": f"{r['used']['forward']} / {r['used']['backward']}",
             "seconds": f"{r['seconds']:.1f}"} for r in doc["runs"]]
    return tables.markdown_table(rows, ["task", "attack", "clean", "robust", "target", "credit", "passes",
                                        "seconds"],
                                 ["task", "attack", "clean accuracy", "robust accuracy", "target", "credit",
                                  "forward / backward passes used", "seconds"])
