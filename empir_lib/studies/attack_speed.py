"""Attack speed: ours against cleverhans 4 and ART, against the bare gradient cost, and run to run.

Every figure is a ratio measured in one run beside its baseline, on the same
model, batch and machine.  The *floor* of a gradient attack is one forward
plus one backward pass through every member it differentiates; an attack step
cannot cost less.  :mod:`empir_lib.studies.bench` runs these and writes
``benchmarks/``.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from ..attack import apgd, art_bridge, attacks, objectives, square
from ..core.timing import best_time
from ..nets import ensemble


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
