"""Chapter 11, part 2, on a GPU: the stochastic ensemble's suite run in JAX, read back (issue 29).

:mod:`empir_lib.studies.expected_gpu` brings the GPU's run home as
``stochastic/expected-gpu.json``: the expected accuracy per suite setting (S
EOT samples, N iterations), each point judged again by the TensorFlow
ensemble.  Here it is read back (:func:`gpu`) and shown: one row per setting
(:func:`gpu_table`), the sentences under it (:func:`gpu_lines`), the
convergence curve's input (:func:`gpu_convergence`) and which stage found each
image's worst point (:func:`gpu_stage_table`).  :mod:`.stochastic` puts the
GPU's numbers beside the CPU's and in the claim.

Every function takes ``root`` (default ``data/results``); a missing file
gives None or a dash.
"""
from __future__ import annotations

from ...core.tables import DASH, markdown_table
from ...studies import expected_study, results
from .committed import Root

DATASET = "cifar10"


def pct(r: dict, key: str) -> dict:
    """``r[key]`` in %, with its 95% interval and standard error (``value``, ``lo``, ``hi``, ``se``)."""
    return {"value": 100 * r[key], "lo": 100 * r[f"{key}_ci95"][0], "hi": 100 * r[f"{key}_ci95"][1],
            "se": 100 * r[f"{key}_se"]}


def cell(v: dict | None) -> str:
    """A table cell: '21.10 (17.10 to 25.10)' for a :func:`pct`, a dash for None."""
    return DASH if v is None else f"{v['value']:.2f} ({v['lo']:.2f} to {v['hi']:.2f})"


def gpu(root: Root = None) -> dict | None:
    """The suite on a GPU (``expected-gpu.json``, :mod:`empir_lib.studies.expected_gpu`), in %, or None.

    Per suite setting: the robust expected accuracy judged again by the
    TensorFlow ensemble (with its interval), the GPU's own estimate, the
    paired change when S and N double, and the GPU seconds; the setting
    chosen by the half-point rule, AutoAttack's rand reference (GPU-judged:
    its points did not come back) and the lottery at the chosen points.
    """
    r = results.find(DATASET, f"{expected_study.FOLDER}/expected-gpu", root)
    if r is None:
        return None
    suites = [{"samples": u["samples"], "n_iter": u["n_iter"], **pct(u, "robust"), "gpu": 100 * u["robust_gpu"],
               "seconds": u["seconds"], "stats": u["stats"],
               # In the order the stages ran (the file's keys are sorted), the clean image first.
               "lowest": {k: u["lowest_by_stage"][k] for k in ["clean", *u["stages"]]},
               "doubled": None if "doubled" not in u else {k: 100 * v for k, v in u["doubled"].items()}}
              for u in r["units"] if u["kind"] == "suite" and "robust" in u]
    c = r["chosen"]
    at = next(u for u in suites if (u["samples"], u["n_iter"]) == (c["samples"], c["n_iter"]))
    aa = next((u for u in r["units"] if u["kind"] == "aa-rand"), None)
    lot = next((u for u in r["units"] if u["kind"] == "lottery"
                and (u["samples"], u["n_iter"]) == (c["samples"], c["n_iter"])), None)
    return {"suites": suites, "chosen": c, "at": at, "clean": pct(r, "clean"), "robust": pct(r, "robust"),
            "n": r["n"], "draws": r["draws"], "device_draws": r.get("device_draws", r["draws"]),
            "tolerance": 100 * r["tolerance"],
            "square": None if "with_square" not in r else {**pct(r["with_square"], "robust"),
                                                           **{k: r["with_square"][k] for k in
                                                              ("queries", "samples", "attacked", "lowest")}},
            "worst": None if "worst_of_runs" not in r else {**pct(r["worst_of_runs"], "robust"),
                                                            "from_runs": r["worst_of_runs"]["from_runs"]},
            "majority": 100 * r["robust_majority"], "wall_s": r["device"]["wall_s"], "jax": r["device"]["jax"],
            "aa": None if aa is None else {"samples": aa["samples"], "n_iter": aa["n_iter"],
                                           "value": 100 * aa["robust_gpu"]},
            "lottery": lot,
            "further": None if "further" not in r else {
                **{k: r["further"][k] for k in ("samples", "n_iter", "n")},
                "before": pct(r["further"]["before"], "robust"), "after": pct(r["further"]["after"], "robust"),
                "doubled": {k: 100 * v for k, v in r["further"]["doubled"].items()}}}


def gpu_table(root: Root = None) -> str:
    """Markdown: one row per suite setting of the GPU run, paired on the same images."""
    g = gpu(root)
    if g is None:
        return DASH
    rows = [{"s": u["samples"], "n": u["n_iter"], "acc": cell(u), "gpu": f"{u['gpu']:.2f}",
             "d": DASH if u["doubled"] is None else (f"{u['doubled']['diff']:+.2f} ({u['doubled']['lo']:+.2f} to "
                                                     f"{u['doubled']['hi']:+.2f})"),
             "t": f"{u['seconds']:.0f}"} for u in g["suites"]]
    return markdown_table(rows, ["s", "n", "acc", "gpu", "d", "t"],
                          ["S", "N", "robust expected accuracy, % (95% interval), judged by TensorFlow",
                           "the GPU's own estimate, %", "change with 2S and 2N, points (paired 95% interval)",
                           "GPU seconds"])


def gpu_convergence(root: Root = None) -> dict | None:
    """The GPU run in the shape :func:`empir_lib.book.plots.convergence_curve` draws (S and N doubled together)."""
    g = gpu(root)
    if g is None:
        return None
    return {"points": g["suites"], "chosen": g["chosen"], "clean": g["clean"], "n": g["n"], "draws": g["draws"],
            "together": True, "title": f"every stage but Square, {g['n']:,} images, R = {g['draws']} (GPU)"}


def gpu_lines(root: Root = None) -> list[str]:
    """Sentences under the GPU table: the draws, the verdict of the last doubling, and the worst of the runs."""
    g = gpu(root)
    if g is None:
        return []
    lines = [f"Points chosen on R = {g['device_draws']} draws on the GPU, judged on R = {g['draws']} fresh, "
             f"seeded draws of the TensorFlow ensemble; clean: {g['clean']['value']:.2f}%."]
    last = [u for u in g["suites"] if u["doubled"] is not None]
    if last:
        d = last[-1]["doubled"]
        moving = d["hi"] < 0
        lines.append(f"Last doubling: {d['diff']:+.2f} points (paired 95% interval {d['lo']:+.2f} to "
                     f"{d['hi']:+.2f}): {'within' if abs(d['diff']) < g['tolerance'] else 'outside'} the "
                     "half-point rule" + ("; still falling, so the number is an upper bound." if moving else "."))
    if g["further"] is not None:
        f, d = g["further"], g["further"]["doubled"]
        lines.append(f"A further doubling (S = {f['samples']}, N = {f['n_iter']}, its own seed) on the first "
                     f"{f['n']:,} images: {f['before']['value']:.2f}% -> {f['after']['value']:.2f}%, "
                     f"{d['diff']:+.2f} points (paired 95% interval {d['lo']:+.2f} to {d['hi']:+.2f}): "
                     f"{'within' if abs(d['diff']) < g['tolerance'] else 'outside'} the half-point rule"
                     + ("; still falling." if d["hi"] < 0 else "; the interval holds zero."))
    if g["square"] is not None:
        q = g["square"]
        lines.append(f"Square on the CPU ({q['queries']} queries of the mean over {q['samples']} draws) on the "
                     f"{q['attacked']} images still above zero: lower for {q['lowest']}; with it, judged again, "
                     f"{q['value']:.2f}% (95% interval {q['lo']:.2f} to {q['hi']:.2f}).")
    if g["worst"] is not None:
        w = g["worst"]
        lines.append(f"Per image the lowest of the {len(w['from_runs'])} runs, judged again on fresh draws: "
                     f"{w['value']:.2f}% (95% interval {w['lo']:.2f} to {w['hi']:.2f}).")
    return lines


def gpu_stage_table(root: Root = None) -> str:
    """Markdown: per stage of the chosen setting, the images it attacked and those whose lowest point it found."""
    g = gpu(root)
    if g is None:
        return DASH
    u = g["at"]
    rows = [{"stage": "(the clean image)" if k == "clean" else k,
             "att": u["stats"].get(k, {}).get("attacked", g["n"]), "low": v} for k, v in u["lowest"].items()]
    return markdown_table(rows, ["stage", "att", "low"],
                          ["stage", "images attacked", "images whose lowest point it found"])
