"""The random ensemble's robust accuracy as the book now defines it: expected over draws, measured until stable.

The committed worst-case suite on the stochastic-quantiser ensemble
(``data/results/cifar10/stochastic/suite-5-255-joint-eot16.json``) judges each
iterate on one draw of the vote and keeps a break that a second draw
confirms.  The attack task ``cifar10-stochastic`` judges as the book now
defines robustness for a randomised defence: the **expected** accuracy of the
vote over :data:`empir_lib.book.attack_tasks.DRAWS` fresh draws at the
attack's final point.  The two are different numbers, so the task's target
comes from this job: the reference attack (EOT over 8 draws, 50 steps), then
again with the budget doubled (16 draws) and a new seed, per image the lower
expected accuracy of the two kept.  The result is quoted as stable only when
the doubled run moved it by at most :data:`TOLERANCE` (the book's rule for a
robustness number).  ``empir assignments expected-worst`` writes
``data/results/cifar10/stochastic/expected-5-255-joint.json``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..core import provenance
from ..core.files import atomic_write
from ..nets import data
from . import attack_solutions
from .attack_runs import LocalDefence
from .attack_tasks import DRAWS, PUBLIC, RESULTS, Defence, Task, ensemble, per_image, validate

PATH = RESULTS / "cifar10" / "stochastic" / "expected-5-255-joint.json"
TOLERANCE = 0.02
RUNS = {"reference": {"samples": 8, "steps": 50, "seed": 0}, "doubled": {"samples": 16, "steps": 50, "seed": 1}}
JUDGE_SEED = 7


def expected_worst_case(t: Task, n: int = 60, path: str | Path = PATH) -> dict:
    """Attack the ``n`` sample images after the public ones twice (:data:`RUNS`); write the record."""
    x, y = data.load_sample(t.dataset)
    x, y = x[PUBLIC:PUBLIC + n], y[PUBLIC:PUBLIC + n]
    ens = ensemble(t)
    clean = per_image(t, ens, x, y, JUDGE_SEED)
    runs, worst = [], clean.copy()
    for label, params in RUNS.items():
        defence = Defence(t, ens, len(x))
        start = time.monotonic()
        x_adv = attack_solutions.reference_attack(LocalDefence(defence), x.copy(), y.copy(), float(t.eps), **params)
        seconds = time.monotonic() - start
        x_adv, error = validate(t, x, x_adv)
        if error:
            raise RuntimeError(f"the reference attack's answer is invalid: {error}")
        acc = per_image(t, ens, x_adv, y, JUDGE_SEED)
        worst = np.minimum(worst, acc)
        runs.append({"label": label, **params, "robust_accuracy": float(acc.mean()), "seconds": round(seconds, 1),
                     "used": dict(defence.used), "per_image": [round(float(v), 5) for v in acc]})
        print(f"{label}: expected robust accuracy {acc.mean():.4f} ({seconds:.0f} s)", flush=True)
    moved = runs[0]["robust_accuracy"] - float(worst.mean())
    doc = {"task": t.name, "members": list(t.members), "eps": t.eps, "n": n, "draws_judged": DRAWS,
           "images": f"embedded {t.dataset} sample, indices {PUBLIC}..{PUBLIC + n - 1} (first {n} after the public)",
           "clean_accuracy": float(clean.mean()), "robust_accuracy": float(worst.mean()), "runs": runs,
           "moved_by_doubling": moved, "tolerance": TOLERANCE, "stable": bool(moved <= TOLERANCE),
           "definition": "expected accuracy of the deployed vote over fresh draws at the attack's final point; "
                         "per image the lower of the two runs",
           "per_image_clean": [round(float(v), 5) for v in clean],
           "provenance": provenance.record("empir assignments expected-worst")}
    atomic_write(Path(path), lambda p: Path(p).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8"))
    return doc
