"""The expected-accuracy study on an accelerator: what goes to the GPU and what comes back (issue 29).

The GPU machine has JAX but no TensorFlow, so a **bundle** carries the
members there as plain arrays (:func:`bundle`: every layer's kind and
options, its kernel, the vote's tie-break order, and the images), and
``scripts/expected_gpu.py`` runs :mod:`empir_lib.attack.expected_jax` on it.
What it writes back is read here into a results file with the usual
provenance (:func:`ingest`), beside the CPU study's files
(:mod:`empir_lib.studies.expected_study`).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import keras
import numpy as np

from ..attack import expected, expected_suite, validate
from ..core import provenance
from ..core.errors import EmpirError
from ..core.files import atomic_write
from ..nets import ensemble as ens_mod
from ..nets import quantize
from . import expected_study, results

_POOLS = {"MaxPooling2D": "maxpool", "AveragePooling2D": "avgpool"}
# The judge's draws (expected.correct_rate's seed): an ingest run twice writes the same file.
SEEDS = {"clean": 1, "unit": 10, "worst": 99, "square": 77, "further": 128}
# The judge's R: more than the attack's own 32, because at R = 32 the draws' noise is most of a doubling's
# paired standard error (about 0.2 point on 1,000 images), which decides the half-point rule.
JUDGE_DRAWS = 128


def layers(model: keras.Model) -> tuple[list[dict], list[np.ndarray]]:
    """One member's layers as plain dicts (kind and options) and their kernels, in order.

    Only chain networks of the layers the paper's MNIST and CIFAR-10
    networks use are carried; anything else is refused by name, so that a
    bundle never silently drops a layer.
    """
    out, kernels = [], []
    for layer in model.layers:
        name = type(layer).__name__
        if name == "InputLayer":
            continue
        if isinstance(layer, quantize.QuantConv2D):
            if layer.groups != 1 or layer.untied_bias:
                raise EmpirError(f"{model.name}/{layer.name}: grouped or untied-bias convolutions are not carried.")
            spec = {"kind": "conv", "strides": layer.strides, "padding": layer.padding}
        elif isinstance(layer, quantize.QuantDense):
            if layer.use_bias:
                raise EmpirError(f"{model.name}/{layer.name}: a dense bias is not carried.")
            spec = {"kind": "dense"}
        elif name in _POOLS:
            if layer.pool_size[0] != layer.pool_size[1] or layer.strides[0] != layer.strides[1]:
                raise EmpirError(f"{model.name}/{layer.name}: only square pools are carried.")
            spec = {"kind": _POOLS[name], "size": int(layer.pool_size[0]), "stride": int(layer.strides[0]),
                    "padding": layer.padding.upper()}
        elif name in ("ReLU", "Flatten"):
            spec = {"kind": name.lower()}
        else:
            raise EmpirError(f"{model.name}/{layer.name}: a {name} layer is not carried to JAX.")
        if spec["kind"] in ("conv", "dense"):
            rounding = layer.rounding
            if rounding is not None and rounding["relaxation"] != "ste":
                raise EmpirError(f"{model.name}/{layer.name}: only the 'ste' relaxation is carried.")
            spec.update(wbits=layer.wbits, abits=layer.abits,
                        stochastic=rounding is not None and rounding["inference"] == "sample",
                        kernel=len(kernels))
            kernels.append(np.asarray(layer.kernel.numpy(), np.float32))
        out.append(spec)
    return out, kernels


def bundle(ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray) -> dict:
    """The arrays :func:`empir_lib.attack.expected_jax.members` reads, with images ``x`` and labels ``y``."""
    arrays, specs = {}, []
    for k, m in enumerate(ens.members):
        spec, kernels = layers(m)
        for j, layer in enumerate(spec):
            if "kernel" in layer:
                arrays[f"m{k}-l{j}"] = kernels[layer.pop("kernel")]
        specs.append(spec)
    x = np.asarray(x, np.float32)
    y = np.asarray(y).reshape(-1).astype(np.int64)
    if len(x) != len(y):
        raise EmpirError(f"{len(x)} images and {len(y)} labels: pass the same number.")
    return {**arrays, "layers": np.array(json.dumps(specs)), "order": ens_mod.priority(ens),
            "names": np.array(json.dumps(list(ens.names))), "x": x, "y": y}


def ingest(device_dir: str | os.PathLike, ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray,
           out_dir: str | os.PathLike, draws: int = JUDGE_DRAWS, command: str | None = None) -> dict:
    """Read a device run (``results.json``, ``results.npz``, ``points-*.npz``) into ``expected-gpu.json``.

    Every returned point is validated and **judged again by the TensorFlow
    reference** on fresh draws (:func:`empir_lib.attack.expected.correct_rate`):
    the quoted expected accuracy is the deployed Keras ensemble's, not the
    port's.  The doubling pairs and the setting to quote follow
    :func:`empir_lib.studies.expected_study.converged`, on those judged values.
    """
    device_dir, out_dir = Path(device_dir), Path(out_dir)
    run = json.loads((device_dir / "results.json").read_text())
    x = np.asarray(x, np.float32)
    y = np.asarray(y).reshape(-1).astype(np.int64)
    if run["names"] != list(ens.names) or run["n"] != len(y) or abs(run["eps"] - expected_study.EPS) > 1e-12:
        raise EmpirError(f"{device_dir}: the run is of {run['names']} on {run['n']} images at eps {run['eps']}; "
                         f"this ingest is of {list(ens.names)} on {len(y)} at {expected_study.EPS}.")
    with np.load(device_dir / "results.npz") as f:
        gpu = dict(f)
    arrays = {"clean": expected.correct_rate(ens, x, y, draws, seed=SEEDS["clean"]), "clean_gpu": gpu["clean"]}
    units, points, headline_x = [], [], {}
    for unit in run["units"]:
        unit = dict(unit)
        name = unit["name"]
        if unit["kind"] != "lottery":
            arrays[f"{name}-gpu"] = gpu[f"{name}-robust"]
            unit["robust_gpu"] = round(float(gpu[f"{name}-robust"].mean()), 6)
            best = gpu[f"{name}-best_stage"]
            unit["lowest_by_stage"] = {s: int(np.sum(best == j)) for j, s in enumerate(["clean", *unit["stages"]])}
            del unit["robust"]
        pts = device_dir / f"points-{name}.npz"
        if unit["kind"] == "suite" and pts.is_file():
            with np.load(pts) as f:
                xa = f["x"]
            ok = validate.valid(x, xa, {"norm": "linf", "eps": expected_study.EPS})
            unit["invalid_on_return"] = int((~ok).sum())
            xa = np.where(ok[:, None, None, None], xa, x)
            p = expected.correct_rate(ens, xa, y, draws, seed=SEEDS["unit"] + len(units))
            arrays[f"{name}-tf"] = p
            unit.update(expected_study.summary("robust", p, draws))
            points.append({"samples": unit["samples"], "n_iter": unit["n_iter"], "robust": unit["robust"]})
            headline_x[(unit["samples"], unit["n_iter"])] = xa
        units.append(unit)
    for unit in units:  # each suite against its doubled S and N (new seed), paired on the same images
        key = f"suite-s{2 * unit.get('samples', 0)}-n{2 * unit.get('n_iter', 0)}-tf"
        if unit["kind"] == "suite" and key in arrays:
            d = expected.paired(arrays[f"{unit['name']}-tf"], arrays[key])
            unit["doubled"] = {k: round(d[k], 6) for k in ("diff", "se", "lo", "hi")}
    if not points:
        raise EmpirError(f"{device_dir}: no suite's points came back; nothing can be judged.")
    chosen = expected_study.converged(points)
    at = next(u for u in units if u["kind"] == "suite" and (u["samples"], u["n_iter"]) ==
              (chosen["samples"], chosen["n_iter"]))
    p = arrays[f"{at['name']}-tf"]
    record = {"kind": "expected-gpu", "members": list(ens.names), "n": len(y), "draws": draws,
              "device_draws": run["draws"],
              "threat": {"name": "linf-5-255", "norm": "linf", "eps": expected_study.EPS},
              "chosen": chosen, "tolerance": expected_study.TOLERANCE, "units": units,
              **expected_study.summary("clean", arrays["clean"], draws),
              **{k: at[k] for k in ("robust", "robust_se", "robust_ci95", "robust_se_draws")},
              "robust_majority": round(float(np.mean(p > 0.5)), 6),
              "device": {"jax_device": run["device"], "jax": run["jax"], "wall_s": run["wall_s"],
                         "seconds_by_unit": {u["name"]: u["seconds"] for u in units}},
              "per_image": {"file": "expected-gpu.npz", "points": "expected-gpu-points.npz", "n": len(y)}}
    best = headline_x[(chosen["samples"], chosen["n_iter"])]
    worst = None
    if len(headline_x) > 1:
        worst, record["worst_of_runs"] = worst_of_runs(headline_x, arrays, y)
        arrays["worst_of_runs"] = expected.correct_rate(ens, worst, y, draws, seed=SEEDS["worst"])
        record["worst_of_runs"].update(expected_study.summary("robust", arrays["worst_of_runs"], draws))
        record["per_image"]["worst_points"] = "expected-gpu-worst-points.npz"
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "expected-gpu.npz", lambda q: np.savez_compressed(open(q, "wb"), **arrays))
    atomic_write(out_dir / "expected-gpu-points.npz", lambda q: np.savez_compressed(open(q, "wb"), x=best))
    if worst is not None:
        atomic_write(out_dir / "expected-gpu-worst-points.npz",
                     lambda q: np.savez_compressed(open(q, "wb"), x=worst))
    return results.write_result(out_dir / "expected-gpu.json", record, "cifar10", command=command)


def worst_of_runs(points: dict, arrays: dict, y: np.ndarray) -> tuple[np.ndarray, dict]:
    """Per image, the point of the run (setting) whose judged expected accuracy there is lowest.

    The runs are restarts of the suite with other seeds and budgets, so their
    worst case per image is a stronger attack than any one of them.  Picking
    the lowest of noisy estimates biases it low, so the caller judges the
    chosen points again on fresh draws; this returns the points and, per
    setting, how many images it supplied.
    """
    keys = sorted(points)
    p = np.stack([arrays[f"suite-s{s}-n{n}-tf"] for s, n in keys])
    # Ties (often all zero or all one) go to the largest budget: the last of the lowest.
    pick = len(keys) - 1 - p[::-1].argmin(0)
    x = np.stack([points[k] for k in keys])[pick, np.arange(len(y))]
    return x, {"from_runs": {f"S={s}, N={n}": int(np.sum(pick == i)) for i, (s, n) in enumerate(keys)}}


def add_square(out_dir: str | os.PathLike, ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray,
               draws: int = JUDGE_DRAWS) -> dict:
    """Square, the suite's gradient-free stage, on the CPU after the GPU run (the port has no Square).

    It attacks (from the clean image, as in the suite's cascade) the images
    whose judged expected accuracy at the quoted setting's points is above
    zero, scored by the mean over draws (:func:`empir_lib.attack.expected_suite.suite`'s
    Square, with chapter 13's queries and samples).  Per image the lower
    of its point and the GPU's is kept, and the kept points are judged again
    on fresh draws: ``with_square`` in ``expected-gpu.json``.
    """
    out_dir = Path(out_dir)
    path = out_dir / "expected-gpu.json"
    record = results.read_result(path)
    x = np.asarray(x, np.float32)
    y = np.asarray(y).reshape(-1).astype(np.int64)
    if record["n"] != len(y) or record["members"] != list(ens.names):
        raise EmpirError(f"{path} is of {record['members']} on {record['n']} images; add_square got "
                         f"{list(ens.names)} on {len(y)}.")
    with np.load(out_dir / "expected-gpu.npz") as f:
        arrays = dict(f)
    with np.load(out_dir / "expected-gpu-points.npz") as f:
        points = f["x"].copy()
    c = record["chosen"]
    p = arrays[f"suite-s{c['samples']}-n{c['n_iter']}-tf"].copy()
    spec = {"name": "square", "kind": "square", "queries": expected_study.SQUARE["square_queries"],
            "samples": expected_study.SQUARE["square_samples"]}
    todo = np.flatnonzero(p > 0)
    t0 = time.perf_counter()
    xa, ps, invalid = expected_suite.run_stage(ens, spec, x[todo], y[todo], expected_study.EPS, draws, seed=7)
    better = ps < p[todo]
    points[todo[better]] = xa[better]
    arrays["square"] = np.full(len(y), np.nan)
    arrays["square"][todo] = ps
    arrays["with_square"] = expected.correct_rate(ens, points, y, draws, seed=SEEDS["square"])
    record["with_square"] = {**spec, "attacked": int(len(todo)), "invalid": int(invalid),
                             "lowest": int(better.sum()), "seconds": round(time.perf_counter() - t0, 1),
                             **expected_study.summary("robust", arrays["with_square"], draws)}
    atomic_write(out_dir / "expected-gpu.npz", lambda q: np.savez_compressed(open(q, "wb"), **arrays))
    if better.any():
        record["per_image"]["square_points"] = "expected-gpu-square-points.npz"
        atomic_write(out_dir / "expected-gpu-square-points.npz",
                     lambda q: np.savez_compressed(open(q, "wb"), x=points))
    kept = {k: v for k, v in record.items() if k not in ("dataset", "data", "timing", "provenance")}
    return results.write_result(path, {**kept, "wall_time_s": record["timing"]["wall_time_s"]},
                                "cifar10", prov=record["provenance"],
                                extra={"square_provenance": provenance.record(None)})


def extend(device_dir: str | os.PathLike, ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray,
           out_dir: str | os.PathLike, draws: int = JUDGE_DRAWS, command: str | None = None) -> dict:
    """A further doubling of the quoted setting, run on the GPU on the first images, read into ``expected-gpu.json``.

    The device run (``scripts/expected_gpu_run.py --plan suite:2S:2N`` on a
    bundle of the first n' images) holds one suite setting at twice the
    quoted S and N, with its own seed.  Its points are validated and judged
    by the TensorFlow ensemble on R fresh, seeded draws, as :func:`ingest`
    judges, and paired with the quoted setting's judged values on the same
    n' images: ``further`` in the record says whether the number still falls
    (the rule of :mod:`empir_lib.studies.expected_study`).  The quoted figure
    is unchanged: the further doubling covers fewer images.
    """
    device_dir, out_dir = Path(device_dir), Path(out_dir)
    path = out_dir / "expected-gpu.json"
    record = results.read_result(path)
    run = json.loads((device_dir / "results.json").read_text())
    c = record["chosen"]
    units = [u for u in run["units"] if u["kind"] == "suite"]
    n = run["n"]
    if run["names"] != record["members"] or n > record["n"] or abs(run["eps"] - expected_study.EPS) > 1e-12:
        raise EmpirError(f"{device_dir}: a run of {run['names']} on {n} images; {path} is of {record['members']} on "
                         f"{record['n']}.")
    if [(u["samples"], u["n_iter"]) for u in units] != [(2 * c["samples"], 2 * c["n_iter"])]:
        raise EmpirError(f"{device_dir}: expected one suite at S = {2 * c['samples']}, N = {2 * c['n_iter']} (twice "
                         f"the quoted setting); it ran {[(u['samples'], u['n_iter']) for u in units]}.")
    u = units[0]
    x = np.asarray(x, np.float32)[:n]
    y = np.asarray(y).reshape(-1).astype(np.int64)[:n]
    with np.load(device_dir / f"points-{u['name']}.npz") as f:
        xa = f["x"]
    ok = validate.valid(x, xa, {"norm": "linf", "eps": expected_study.EPS})
    p = expected.correct_rate(ens, np.where(ok[:, None, None, None], xa, x), y, draws, seed=SEEDS["further"])
    with np.load(out_dir / "expected-gpu.npz") as f:
        arrays = dict(f)
    before = arrays[f"suite-s{c['samples']}-n{c['n_iter']}-tf"][:n]
    d = expected.paired(before, p)
    arrays[f"{u['name']}-tf"] = p
    record["further"] = {"samples": u["samples"], "n_iter": u["n_iter"], "seed": u["seed"], "n": n,
                         "invalid_on_return": int((~ok).sum()), "seconds": u["seconds"],
                         "device": {"jax_device": run["device"], "jax": run["jax"], "wall_s": run["wall_s"]},
                         "before": expected_study.summary("robust", before, draws),
                         "after": expected_study.summary("robust", p, draws),
                         "doubled": {k: round(d[k], 6) for k in ("diff", "se", "lo", "hi")}}
    atomic_write(out_dir / "expected-gpu.npz", lambda q: np.savez_compressed(open(q, "wb"), **arrays))
    kept = {k: v for k, v in record.items() if k not in ("dataset", "data", "timing", "provenance")}
    return results.write_result(path, {**kept, "wall_time_s": record["timing"]["wall_time_s"]}, "cifar10",
                                prov=record["provenance"],
                                extra={"further_provenance": provenance.record(command)})
