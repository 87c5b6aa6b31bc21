"""The benchmarks: training speed per precision, and running and reporting every part.

The attack measurements live in :mod:`empir_lib.studies.attack_speed`.  Every
figure is a ratio measured in one run beside its baseline, on the same model,
batch and machine (benchmarks/README.md shows them beside that machine).
Results go to ``benchmarks/results.json`` with the machine they ran on;
``empir bench`` reruns them.
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

from ..core import files, provenance, settings
from ..core.errors import EmpirError
from ..core.files import atomic_write, write_json
from ..core.timing import best_time
from ..nets import data, ensemble, models
from . import attack_speed

BENCH_DIR = files.REPO / "benchmarks"
EMPIR_LABEL = "MNIST EMPIR (a4w2, a4w2, FP)"  # the label the committed results carry


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
        rows = attack_speed.attack_speed(ensemble.baseline("mnist"), "MNIST FP baseline", x, y)
        result["attacks"] = rows + attack_speed.attack_speed(ensemble.empir("mnist"), EMPIR_LABEL, x, y)
    if only in (None, "apgd"):
        result["apgd"] = [attack_speed.apgd_speed(ensemble.empir("mnist"), EMPIR_LABEL, x, y)]
        result["suite_cw"] = [attack_speed.suite_cw_speed(ensemble.empir("mnist"), EMPIR_LABEL, x[:100], y[:100])]
    if only in (None, "restarts"):  # a re-check's survivors: 10 MNIST and 10 CIFAR-10 images
        result["restarts"] = _on_empir(attack_speed.restarts_speed, 10)
    if only in (None, "square"):  # the suite's L-inf Square stage
        result["square"] = _on_empir(attack_speed.square_speed, 100)
    if only in (None, "training"):
        result["training"] = training_speed()
    if only in (None, "end_to_end"):
        result["end_to_end"] = {**end_to_end(), **(book_times() if book else {})}
    command = "empir bench" + (f" --only {only}" if only else "") + (" --book" if book else "")
    result.update(wall_time_s=round(time.perf_counter() - t0, 1), machine=provenance.hardware(),
                  provenance=provenance.record(command))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "results.json", result)
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
