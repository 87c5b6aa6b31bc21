"""The device side of ``scripts/expected_gpu.py``: the plan, in JAX, on a machine without TensorFlow (issue 29).

    PYTHONPATH=. python3 scripts/expected_gpu_run.py .gpu/bundle.npz OUT_DIR [--budget SECONDS] [--plan KIND:S:N,...]

The plan (:data:`PLAN`, most valuable first): the expected-accuracy suite
(:func:`empir_lib.attack.expected_suite.suite`, less Square) at (S, N) =
(16, 50), (32, 100), (64, 200), (128, 400), each doubling S and the
iterations with a new seed, paired on the same images; AutoAttack's ``rand``
protocol; and the lottery at the suite's points.  ``--budget`` stops
starting new units once that many seconds have passed; every finished unit
is written at once (``results.json``, ``results.npz``, ``points-*.npz``), so
what has finished always comes back.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from empir_lib.attack import expected_jax as ej
from empir_lib.nets import jax_members as jm

EPS = 5 / 255
DRAWS = 32
QUERIES = (1, 2, 5, 10, 20, 50, 100)
PLAN = [("suite", 16, 50), ("suite", 32, 100), ("aa-rand", 20, 100), ("lottery", 32, 100), ("suite", 64, 200),
        ("lottery", 64, 200), ("suite", 128, 400)]


def specs(kind: str, samples: int, n_iter: int) -> list[dict]:
    """The stages of one unit: the CPU suite's own list (expected_suite), Square left out."""
    eot = {"samples": samples, "n_iter": n_iter, "restarts": 1}
    if kind == "aa-rand":  # AutoAttack's rand version: APGD-CE and APGD-DLR with 20 EOT samples
        return [{"name": "apgd-ce", "kind": "apgd", "loss": "ce_mean_prob", **eot},
                {"name": "apgd-dlr", "kind": "apgd", "loss": "dlr_mean_logits", **eot}]
    return ([{"name": "apgd-ce", "kind": "apgd", "loss": "ce_mean_prob", **eot},
             {"name": "apgd-dlr", "kind": "apgd", "loss": "dlr_mean_logits", **eot},
             {"name": "pgd-margin", "kind": "pgd", "loss": "margin_mean_logits", "step_frac": 2.5 / n_iter, **eot}]
            + [{"name": f"member-{i}", "kind": "apgd", "loss": f"ce_member:{i}", **eot} for i in range(3)]
            + [{"name": "nearest", "kind": "nearest", "n_iter": n_iter, "restarts": 1},
               {"name": "fixed-draws", "kind": "fixed-draws", "draws": 4, "n_iter": n_iter, "restarts": 1}])


def parse_plan(text: str) -> list[tuple[str, int, int]]:
    """``suite:128:400,lottery:128:400`` as the plan's units, checked."""
    out = []
    for unit in text.split(","):
        kind, s, n = unit.split(":")
        if kind not in ("suite", "aa-rand", "lottery") or not (s.isdigit() and n.isdigit()):
            raise SystemExit(f"--plan: {unit!r} is not KIND:S:N with KIND suite, aa-rand or lottery.")
        out.append((kind, int(s), int(n)))
    return out


def run(bundle_path: str, out_dir: str, budget: float, plan: list[tuple[str, int, int]] = PLAN) -> None:
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with np.load(bundle_path) as f:
        b = dict(f)
    ms, order = jm.members(b)
    x, y = b["x"], b["y"].astype(np.int64)
    record = {"device": str(jax.devices()[0]), "jax": jax.__version__, "n": len(y), "eps": EPS, "draws": DRAWS,
              "names": json.loads(str(b["names"])), "units": []}
    arrays: dict = {}
    key = jax.random.key(2029)
    clean = ej.correct_rate(ms, order, x, y, DRAWS, jax.random.fold_in(key, 0))
    arrays["clean"] = clean
    points = {}
    for u, (kind, s, n) in enumerate(plan):
        elapsed = time.perf_counter() - t_start
        if elapsed > budget:
            print(f"budget: {elapsed:.0f} s used, {kind} S={s} N={n} not started", flush=True)
            break
        t0 = time.perf_counter()
        name = f"{kind}-s{s}-n{n}"
        if kind == "lottery":
            if (s, n) not in points:
                continue
            k = jax.random.fold_in(key, 10_000 + u)
            at = ej.lottery(ms, order, points[(s, n)], y, list(QUERIES), k)
            ctrl = ej.lottery(ms, order, x, y, list(QUERIES), jax.random.fold_in(k, 1))
            unit = {"name": name, "kind": kind, "samples": s, "n_iter": n, "queries": list(QUERIES),
                    "attack": at["survive"], "control": ctrl["survive"], "attack_mean_p_power": at["mean_p_power"],
                    "control_mean_p_power": ctrl["mean_p_power"]}
        else:
            res = ej.evaluate(ms, order, x, y, EPS, specs(kind, s, n), DRAWS, seed=1000 * s + n, clean=clean,
                              tick=lambda stage, k, name=name: print(f"  {name} {stage}: {k} images, "
                                                          f"{time.perf_counter() - t_start:.0f} s", flush=True))
            for field in ("robust", "per_stage", "best_stage"):
                arrays[f"{name}-{field}"] = res[field]
            points[(s, n)] = res["points"]
            unit = {"name": name, "kind": kind, "samples": s, "n_iter": n, "seed": 1000 * s + n,
                    "stages": res["stages"], "stats": res["stats"], "robust": float(res["robust"].mean())}
            if kind == "suite":  # the points come back to be judged again by the TensorFlow reference
                np.savez_compressed(out / f"points-{name}.npz", x=res["points"].astype(np.float32))
        unit["seconds"] = round(time.perf_counter() - t0, 1)
        record["units"].append(unit)
        record["wall_s"] = round(time.perf_counter() - t_start, 1)
        print(json.dumps({k: v for k, v in unit.items() if k not in ("stages",)}), flush=True)
        np.savez_compressed(out / "results.npz", **arrays)
        (out / "results.json").write_text(json.dumps(record, indent=1))


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0].startswith("-"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    budget = float(argv[argv.index("--budget") + 1]) if "--budget" in argv else float("inf")
    plan = parse_plan(argv[argv.index("--plan") + 1]) if "--plan" in argv else PLAN
    run(argv[0], argv[1], budget, plan)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
