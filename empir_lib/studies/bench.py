"""Speed measurements: attacks against cleverhans 4 and against the bare gradient cost, and training.

Every figure is a ratio measured in one run beside its baseline, on the same
model, batch and machine (benchmarks/README.md shows them beside that machine).  The
*floor* of a gradient attack is one forward plus one backward pass through
every member it differentiates; an attack step cannot cost less.  Results go
to ``benchmarks/results.json`` with the machine they ran on; ``empir bench``
reruns them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ..attack import apgd, art_bridge, attacks, objectives, square
from ..core import files, provenance, settings
from ..core.errors import EmpirError
from ..core.files import atomic_write
from ..core.timing import best_time
from ..nets import data, ensemble, models

BENCH_DIR = files.REPO / "benchmarks"


def floor_fn(ens: ensemble.Ensemble, objective: str) -> Callable:
    """One forward + backward pass of the objective's members: the cost of one attack step, at least."""
    score_fn = attacks.score_function(ens, objective)

    @tf.function
    def grad(x, y):
        return attacks.ce_grad(score_fn, x, y)

    return grad


def attack_speed(ens: ensemble.Ensemble, label: str, x: np.ndarray, y: np.ndarray, repeats: int = 3,
                 cw_images: int = 100) -> list[dict]:
    """Images/s of our FGSM, BIM-40, PGD-40 and CW-50 beside cleverhans 4 and the floor."""
    # cleverhans is needed by the benchmarks only (installed with --no-deps, see the Makefile): import it here.
    from cleverhans.tf2.attacks.carlini_wagner_l2 import carlini_wagner_l2  # noqa: PLC0415
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method  # noqa: PLC0415
    from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent  # noqa: PLC0415

    objective = "member:0" if len(ens.members) == 1 else "mean_prob"
    score_fn = attacks.score_function(ens, objective)
    xt, yt = tf.constant(x), tf.constant(y.astype(np.int32))
    y64 = tf.constant(y.astype(np.int64))
    grad = floor_fn(ens, objective)
    # Ten back-to-back gradient calls per timing, best of 2 * repeats: the floor must not be inflated by noise.
    t_floor = best_time(lambda: [grad(xt, yt) for _ in range(10)][-1].numpy(), 2 * repeats) / 10
    rows = []
    for name in ("fgsm", "bim", "pgd", "cw"):
        p = attacks.preset("mnist", name)
        steps = {"fgsm": 1, "bim": p.get("nb_iter"), "pgd": p.get("nb_iter"), "cw": p.get("max_iterations")}[name]
        xs, ys = (x[:cw_images], y[:cw_images]) if name == "cw" else (x, y)
        run = attacks.compile_attack(ens, name, objective, p)
        t_ours = best_time(lambda: run(xs, ys.astype(np.int32), 0), repeats if name != "cw" else 1)
        t_ch = t_ch_fn = None
        ch_error = None
        xs_t = tf.constant(xs)
        try:
            if name == "fgsm":
                def ch():
                    return fast_gradient_method(score_fn, xs_t, p["eps"], np.inf, clip_min=0.0, clip_max=1.0,
                                                y=y64)
            elif name in ("bim", "pgd"):
                def ch():
                    return projected_gradient_descent(score_fn, xs_t, p["eps"], p["eps_iter"], p["nb_iter"],
                                                      np.inf, clip_min=0.0, clip_max=1.0, y=y64,
                                                      rand_init=name == "pgd", sanity_checks=False)
            else:
                def ch():
                    return carlini_wagner_l2(score_fn, xs_t, y=tf.constant(ys.astype(np.int64)),
                                             batch_size=len(ys), binary_search_steps=1, max_iterations=50,
                                             learning_rate=0.1, initial_const=10.0, abort_early=True,
                                             clip_min=0.0, clip_max=1.0)
            t_ch = best_time(lambda: np.asarray(ch()), 1)
            if name != "cw":
                ch_fn = tf.function(ch)
                t_ch_fn = best_time(lambda: np.asarray(ch_fn()), 1)
        except Exception as e:  # cleverhans' CW under Keras 3: record why, do not hide it
            ch_error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        n = len(xs)
        per_step_floor = t_floor * n / len(x)
        rows.append({
            "model": label, "attack": name, "objective": objective, "images": n, "steps": steps,
            "ours_images_per_s": round(n / t_ours, 1),
            "cleverhans_eager_images_per_s": round(n / t_ch, 1) if t_ch else None,
            "cleverhans_tf_function_images_per_s": round(n / t_ch_fn, 1) if t_ch_fn else None,
            "cleverhans_error": ch_error,
            "speedup_vs_cleverhans_eager": round(t_ch / t_ours, 2) if t_ch else None,
            "speedup_vs_cleverhans_tf_function": round(t_ch_fn / t_ours, 2) if t_ch_fn else None,
            "floor_images_per_s": round(n / (per_step_floor * steps), 1),
            "cost_vs_floor": round(t_ours / (per_step_floor * steps), 3),
        })
    return rows


FP = (settings.FULL_PRECISION, settings.FULL_PRECISION)
# (network, build kwargs, input shape, classes, precisions as (wbits, abits)); the first is the FP baseline.
TRAINING_CONFIGS = [
    ("mnist_conv", {}, (28, 28, 1), 10, (FP, (2, 4), (4, 2), (1, 1))),
    ("cifar_conv", {}, (32, 32, 3), 10, (FP, (2, 4), (4, 2), (1, 1))),
    # Tiny ImageNet's AlexNet at the recipe's quarter width and at half width:
    # the measurement behind the width chosen in settings.TINY_IMAGENET.recipe.
    ("alexnet_tiny", {"width": 0.25}, (64, 64, 3), 200, (FP, (2, 2), (4, 4))),
    ("alexnet_tiny", {"width": 0.5}, (64, 64, 3), 200, (FP, (2, 2), (4, 4))),
]


def apgd_speed(ens: ensemble.Ensemble, label: str, x: np.ndarray, y: np.ndarray, eps: float = 0.1,
               n_iter: int = 100, repeats: int = 2) -> dict:
    """Image-steps/s of our APGD-CE (with and without compaction) beside ART's APGD-CE and the floor.

    All on the same images, model and objective (cross-entropy of the mean
    probability), in one run.  An image-step is one forward + backward pass
    through every member; the floor is that pass alone, batched.  ART's
    count is nominal (images x iterations), as it runs every iteration.
    """
    fn = objectives.loss_fn(ens, "ce_mean_prob")
    xt, yt = tf.constant(x), tf.constant(y.astype(np.int32))
    grad = tf.function(lambda a, b: apgd.loss_decision_gradient(fn, a, b)[2])
    t_floor = best_time(lambda: [grad(xt, yt) for _ in range(5)][-1].numpy(), 2 * repeats) / 5
    rates = {}
    for name, segment in (("ours_no_compaction", n_iter), ("ours_compaction", 10)):
        out = {}

        def once(segment: int = segment, out: dict = out) -> None:
            out["o"] = apgd.run(fn, x, y, eps, n_iter=n_iter, segment=segment)

        t = best_time(once, repeats)
        rates[name] = {"image_steps_per_s": round(out["o"].steps / t, 1), "images_per_s": round(len(x) / t, 2),
                       "robust": round(float(1 - out["o"].broken.mean()), 4)}
    t0 = time.perf_counter()
    xa = art_bridge.apgd_ce(ens, x, y, eps, n_iter)
    t_art = time.perf_counter() - t0
    rates["art"] = {"image_steps_per_s": round(len(x) * n_iter / t_art, 1), "images_per_s": round(len(x) / t_art, 2),
                    "robust": round(float(np.mean(ensemble.predict(ens, xa) == y)), 4)}
    floor = len(x) / t_floor
    ours = rates["ours_no_compaction"]
    return {"model": label, "eps": eps, "n_iter": n_iter, "n": len(x), "floor_image_steps_per_s": round(floor, 1),
            **{f"{k}_{m}": v for k, r in rates.items() for m, v in r.items()},
            "ours_vs_art": round(ours["image_steps_per_s"] / rates["art"]["image_steps_per_s"], 2),
            "ours_cost_vs_floor": round(floor / ours["image_steps_per_s"], 3)}


def restarts_speed(ens: ensemble.Ensemble, label: str, x: np.ndarray, y: np.ndarray, eps: float = 0.01,
                   n_iter: int = 20, restarts: int = 8, repeats: int = 2) -> dict:
    """A re-check's case: few survivors, many restarts; one after another (the baseline) and side by side.

    The baseline calls APGD-CE once per restart on the images earlier
    restarts left, as ``apgd.run`` did before it ran restarts as extra rows
    of one batch.  ``y`` is the ensemble's own decision and ``eps`` small, so
    no image breaks and both spend the same image-steps.
    """
    fn = objectives.loss_fn(ens, "ce_mean_prob")
    out = {}

    def sequential() -> None:
        broken, steps = np.zeros(len(x), bool), 0
        for r in range(restarts):
            o = apgd.run(fn, x[~broken], y[~broken], eps, n_iter=n_iter, seed=r)
            broken[np.flatnonzero(~broken)[o.broken]] = True
            steps += o.steps
        out["sequential"] = steps

    def side_by_side() -> None:
        out["side_by_side"] = apgd.run(fn, x, y, eps, n_iter=n_iter, restarts=restarts).steps

    times = {k: best_time(f, repeats) for k, f in (("sequential", sequential), ("side_by_side", side_by_side))}
    rates = {k: out[k] / t for k, t in times.items()}
    return {"model": label, "n": len(x), "n_iter": n_iter, "restarts": restarts,
            **{f"{k}_image_steps_per_s": round(v, 1) for k, v in rates.items()},
            "side_by_side_vs_sequential": round(rates["side_by_side"] / rates["sequential"], 2)}


def square_speed(ens: ensemble.Ensemble, label: str, x: np.ndarray, y: np.ndarray, eps: float = 0.005,
                 queries: int = 100, repeats: int = 2) -> dict:
    """Square-L-inf's image-queries/s: ours (one pass per query) against ART's (the baseline), same images.

    ``y`` is the ensemble's own decision and ``eps`` tiny, so (almost) no
    image breaks and both spend every query on every image.
    """
    out = {}

    def ours() -> None:
        out["ours"] = square.square_linf(ens, x, y, eps, queries, seed=0)[1]["image_steps"]

    def art() -> None:
        art_bridge.square(ens, x, y, eps, queries, 1, 0)
        out["art"] = len(x) * queries

    times = {k: best_time(f, repeats) for k, f in (("art", art), ("ours", ours))}
    rates = {k: out[k] / t for k, t in times.items()}
    return {"model": label, "n": len(x), "queries": queries,
            **{f"{k}_image_queries_per_s": round(v, 1) for k, v in rates.items()},
            "ours_vs_art": round(rates["ours"] / rates["art"], 2)}


def suite_cw_speed(ens: ensemble.Ensemble, label: str, x: np.ndarray, y: np.ndarray, iterations: int = 50,
                   repeats: int = 3) -> dict:
    """Image-steps/s of the suite's CW-L2 step judged on the vote: read off the same pass, and a separate pass.

    One binary-search step of ``iterations`` Adam steps without early abort, on
    the same images and constant, in one run; the floor is one forward +
    backward pass of every member.  The two variants return the same images
    (tests/test_suite.py); only their cost differs.
    """
    xt, yt = tf.constant(x), tf.constant(y.astype(np.int32))
    const = tf.fill([len(x)], np.float32(10.0))
    cw = dict(num_classes=ens.num_classes, max_iterations=iterations, learning_rate=0.1, confidence=0.0,
              abort_early=False)
    mean = objectives.mean_logits_fn(ens)
    steps = {"one_pass": tf.function(lambda a, b, c: attacks.cw_l2(objectives.mean_logits_and_decision_fn(ens),
                                                                   a, b, c, joint=True, **cw)),
             "separate_vote": tf.function(lambda a, b, c: attacks.cw_l2(mean, a, b, c,
                                                                        decide=objectives.decision_fn(ens), **cw))}
    fn = objectives.loss_fn(ens, "ce_mean_prob")
    grad = tf.function(lambda a, b: apgd.loss_decision_gradient(fn, a, b)[2])
    t_floor = best_time(lambda: [grad(xt, yt) for _ in range(5)][-1].numpy(), 2 * repeats) / 5
    rates = {k: len(x) * iterations / best_time(lambda f=f: f(xt, yt, const)[1].numpy(), repeats)
             for k, f in steps.items()}
    return {"model": label, "n": len(x), "iterations": iterations,
            **{f"{k}_image_steps_per_s": round(v, 1) for k, v in rates.items()},
            "floor_image_steps_per_s": round(len(x) / t_floor, 1),
            "one_pass_vs_separate": round(rates["one_pass"] / rates["separate_vote"], 3)}


def training_speed(batches: int = 20, batch_size: int = 128, configs: list | None = None) -> list[dict]:
    """Training images/s per network and precision, and the quantisers' cost against FP."""
    rows = []
    for arch, kwargs, shape, classes, precisions in configs or TRAINING_CONFIGS:
        fp_rate = None
        for wbits, abits in precisions:
            model = models.build(arch, wbits, abits, **kwargs)
            opt = keras.optimizers.Adam(1e-3)
            x = tf.random.uniform((batch_size, *shape), seed=1)
            y = tf.constant(np.arange(batch_size) % classes)

            @tf.function
            def step():
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x, training=True)))
                g = tape.gradient(loss, model.trainable_variables)
                opt.apply_gradients(zip(g, model.trainable_variables))
                return loss

            t = best_time(lambda: [step() for _ in range(batches)][-1].numpy(), 3)
            rate = batches * batch_size / t
            fp_rate = fp_rate or rate
            name = arch + "".join(f" {k}={v}" for k, v in kwargs.items())
            rows.append({"network": name, "precision": settings.precision_tag(wbits, abits),
                         "images_per_s": round(rate, 1), "cost_vs_fp": round(fp_rate / rate, 3)})
    return rows


PARTS = ("attacks", "apgd", "restarts", "square", "training", "end_to_end")


def run(out_dir: str | os.PathLike | None = None, n: int = 500, progress: bool = True, book: bool = False,
        only: str | None = None) -> dict:
    """All benchmarks (or the ``only`` part, kept beside the committed others); writes ``benchmarks/``."""
    out_dir = Path(out_dir or BENCH_DIR)
    if only is not None and only not in PARTS:
        raise EmpirError(f"unknown benchmark part {only!r}; choose one of: {', '.join(PARTS)}.")
    old = json.loads((out_dir / "results.json").read_text()) if (out_dir / "results.json").is_file() else {}
    x, y = data.load_sample("mnist", n)
    t0 = time.perf_counter()
    result = dict(old)
    if only in (None, "attacks"):
        rows = attack_speed(ensemble.baseline("mnist"), "MNIST FP baseline", x, y)
        result["attacks"] = rows + attack_speed(ensemble.empir("mnist"), "MNIST EMPIR (a4w2, a4w2, FP)", x, y)
    if only in (None, "apgd"):
        result["apgd"] = [apgd_speed(ensemble.empir("mnist"), "MNIST EMPIR (a4w2, a4w2, FP)", x, y)]
        result["suite_cw"] = [suite_cw_speed(ensemble.empir("mnist"), "MNIST EMPIR (a4w2, a4w2, FP)",
                                             x[:100], y[:100])]
    if only in (None, "restarts"):  # a re-check's survivors: 10 MNIST and 10 CIFAR-10 images
        result["restarts"] = _on_empir(restarts_speed, 10)
    if only in (None, "square"):  # the suite's L-inf Square stage
        result["square"] = _on_empir(square_speed, 100)
    if only in (None, "training"):
        result["training"] = training_speed()
    if only in (None, "end_to_end"):
        result["end_to_end"] = {**end_to_end(), **(book_times() if book else {})}
    command = "empir bench" + (f" --only {only}" if only else "") + (" --book" if book else "")
    result.update(wall_time_s=round(time.perf_counter() - t0, 1), machine=provenance.hardware(),
                  provenance=provenance.record(command))
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "results.json",
                 lambda p: Path(p).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n"))
    atomic_write(out_dir / "README.md", lambda p: Path(p).write_text(readme(result)))
    return result


def _on_empir(speed: Callable, n: int) -> list[dict]:
    """``speed(ens, label, x, y)`` on MNIST's and CIFAR-10's EMPIR, first ``n`` sample images, y their decision."""
    rows = []
    for ds, label in (("mnist", "MNIST EMPIR"), ("cifar10", "CIFAR-10 EMPIR")):
        ens = ensemble.empir(ds)
        xs = data.load_sample(ds, n)[0]
        rows.append(speed(ens, label, xs, ensemble.predict(ens, xs)))
    return rows


def book_times() -> dict:
    """Wall time of the quick-profile notebook run (nbval, every chapter) and of the HTML build."""
    out = {}
    root = files.REPO
    with tempfile.TemporaryDirectory() as tmp:
        for name, cmd in (("quick-profile notebook run (pytest --nbval-lax book)",
                           [sys.executable, "-m", "pytest", "-q", "--nbval-lax", "book", "-p", "no:cacheprovider"]),
                          ("HTML build (jupyter-book build)",
                           [str(Path(sys.executable).parent / "jupyter-book"), "build", str(root), "--path-output",
                            tmp, "--warningiserror", "--keep-going"])):
            t0 = time.perf_counter()
            r = subprocess.run(cmd, cwd=root, capture_output=True, text=True,
                               env={**os.environ, "EMPIR_DATA_DIR": ""})
            out[name] = {"total_s": round(time.perf_counter() - t0, 1), "ok": r.returncode == 0}
    return out


def end_to_end() -> dict:
    """The recorded wall times of the long jobs (their own files), gathered in one place."""
    out = {}
    for ds in settings.EMPIR_MEMBERS:  # the datasets empir reproduce runs
        path = files.REPO / "data" / "results" / ds / "timing.json"
        if path.is_file():
            t = json.loads(path.read_text())
            out[f"empir reproduce {ds}"] = {"total_s": t["total_s"], "steps": len(t["steps"])}
    return out


def readme(result: dict) -> str:
    """``benchmarks/README.md`` from ``results.json``: one section per part the results hold (any subset)."""
    m = result["machine"]
    lines = ["# Benchmarks", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, GPUs: {', '.join(m['gpus']) or 'none'}. "
             "Written by `empir bench` (`empir_lib/studies/bench.py`); every ratio is measured in the same run as its "
             "baseline. Do not edit by hand."]
    if "attacks" in result:
        lines += _attack_section(result["attacks"])
    if "apgd" in result:
        lines += _apgd_section(result["apgd"], result.get("suite_cw", []))
    if "restarts" in result:
        lines += ["", "## Restarts side by side (a re-check: few survivors, many restarts; APGD-CE, none broken)",
                  "", "| model | images | iterations | restarts | one after another image-steps/s | "
                  "side by side image-steps/s | side by side / one after another |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['model']} | {r['n']} | {r['n_iter']} | {r['restarts']} | "
                  f"{r['sequential_image_steps_per_s']} | {r['side_by_side_image_steps_per_s']} | "
                  f"{r['side_by_side_vs_sequential']} |" for r in result["restarts"]]
    if "square" in result:
        lines += ["", "## Square L-inf (eps 0.005, labels the ensemble's own: few break): ours against ART's", "",
                  "| model | images | queries | ART image-queries/s | ours image-queries/s | ours / ART |",
                  "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['model']} | {r['n']} | {r['queries']} | {r['art_image_queries_per_s']} | "
                  f"{r['ours_image_queries_per_s']} | {r['ours_vs_art']} |" for r in result["square"]]
    if "training" in result:
        lines += ["", "## Training (batches of 128)", "", "| network | precision | img/s | cost vs FP |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {r['network']} | {r['precision']} | {r['images_per_s']} | {r['cost_vs_fp']} |"
                  for r in result["training"]]
    if "end_to_end" in result:
        lines += ["", "## End to end", "", "| job | total s |", "| --- | --- |"]
        lines += [f"| {k} | {v['total_s']} |" for k, v in result["end_to_end"].items()]
    lines += ["", "Ratios against the floor are the time of the attack divided by (steps x the time of one",
              "forward + backward pass of the members it differentiates), both measured here in one run."]
    return "\n".join(lines) + "\n"


def _attack_section(rows: list[dict]) -> list[str]:
    lines = ["", "## Attacks (500 MNIST test images; CW on 100)", "",
             "| model | attack | ours img/s | cleverhans eager img/s | cleverhans tf.function img/s | "
             "speed-up (eager / tf.function) | floor img/s | cost vs floor |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ch = r["cleverhans_eager_images_per_s"]
        chf = r["cleverhans_tf_function_images_per_s"]
        lines.append(f"| {r['model']} | {r['attack']} | {r['ours_images_per_s']} | "
                     f"{ch if ch else 'fails: ' + (r['cleverhans_error'] or '')} | {chf or '-'} | "
                     f"{r['speedup_vs_cleverhans_eager'] or '-'} / {r['speedup_vs_cleverhans_tf_function'] or '-'} | "
                     f"{r['floor_images_per_s']} | {r['cost_vs_floor']} |")
    return lines


def _apgd_section(apgd: list[dict], suite_cw: list[dict]) -> list[str]:
    lines = ["", "## APGD-CE on the worst-case suite's objective (one run: ours, ART 1.20.1, the floor)", "",
              "| model | images | iterations | ours image-steps/s | ours with compaction img/s | ART image-steps/s | "
              "floor image-steps/s | ours / ART | ours cost vs floor | robust: ours / ART |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['model']} | {r['n']} | {r['n_iter']} | {r['ours_no_compaction_image_steps_per_s']} | "
              f"{r['ours_compaction_images_per_s']} | {r['art_image_steps_per_s']} | {r['floor_image_steps_per_s']} | "
              f"{r['ours_vs_art']} | {r['ours_cost_vs_floor']} | {r['ours_no_compaction_robust']:.1%} / "
              f"{r['art_robust']:.1%} |" for r in apgd]
    lines += ["", "## The suite's CW-L2, judged on the vote (one binary-search step, no early abort)", "",
              "| model | images | iterations | vote from the same pass: image-steps/s | separate vote pass: "
              "image-steps/s | same pass / separate | floor image-steps/s |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['model']} | {r['n']} | {r['iterations']} | {r['one_pass_image_steps_per_s']} | "
              f"{r['separate_vote_image_steps_per_s']} | {r['one_pass_vs_separate']} | {r['floor_image_steps_per_s']} |"
              for r in suite_cw]
    return lines
