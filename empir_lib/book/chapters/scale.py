"""The ImageNet-scale chapter (chapter 9): AlexNet on ImageNet (the paper's) beside ours on Tiny ImageNet.

Networks here are built untrained and once each (:func:`net`): the sizes,
multiply-accumulates and overheads depend on their shapes, not on weights.
"""
from __future__ import annotations

import time

import keras
import numpy as np

from ...core import memo, settings, tables
from ...core.settings import FULL_PRECISION
from ...core.timing import best_time
from ...hardware import overhead
from ...nets import models
from .. import plots
from .members import precision

DATASET = "tiny-imagenet"
PAPER = "imagenet"  # the paper's Table 2 row that Tiny ImageNet stands in for
WIDTH = settings.RECIPES[DATASET]["arch_kwargs"]["width"]
# Section 5.1 of the paper: EMPIR models were chosen under "<25% compute and memory overhead".
PAPER_OVERHEAD_BOUND = 0.25

BUILD = {"mnist": models.mnist_conv, "cifar10": models.cifar_conv,
         DATASET: lambda w, a: models.alexnet_tiny(w, a, width=WIDTH), PAPER: models.alexnet}


def net(name: str, wbits: int = FULL_PRECISION, abits: int = FULL_PRECISION) -> keras.Model:
    """The untrained network of ``name`` ('mnist', 'cifar10', 'tiny-imagenet', 'imagenet'), built once."""
    return memo.get("scale.nets", (name, wbits, abits), lambda: BUILD[name](wbits, abits), 32)


def conv1(model: keras.Model) -> str:
    """The first convolution in words: kernel, stride and filters."""
    layer = model.get_layer("conv1")
    return f"{layer.kernel_size[0]}\u00d7{layer.kernel_size[1]}, stride {layer.strides}, {layer.filters} filters"


def macs(model: keras.Model) -> int:
    """Multiply-accumulates per image."""
    return sum(r["macs"] for r in overhead.layer_macs(model))


def settings_table() -> str:
    """The paper's AlexNet on ImageNet against ours on Tiny ImageNet, setting by setting, as Markdown."""
    full, tiny = net(PAPER), net(DATASET)
    pgd, bim, fgsm = (settings.ATTACK_PRESETS[DATASET][a] for a in ("pgd", "bim", "fgsm"))
    rows = [
        {"what": "images", "paper": "\u00d7".join(map(str, settings.INPUT_SHAPES[PAPER])),
         "ours": "\u00d7".join(map(str, settings.INPUT_SHAPES[DATASET]))},
        {"what": "classes", "paper": settings.NUM_CLASSES[PAPER], "ours": settings.NUM_CLASSES[DATASET]},
        {"what": "first convolution", "paper": conv1(full), "ours": conv1(tiny)},
        {"what": "width multiplier", "paper": "1", "ours": WIDTH},
        {"what": "weights", "paper": f"{full.count_params():,}", "ours": f"{tiny.count_params():,}"},
        {"what": "multiply-accumulates per image", "paper": f"{macs(full):,}", "ours": f"{macs(tiny):,}"},
        {"what": "weights kept in float32 by an LP member", "paper": f"{overhead.fp_share(net(PAPER, 2, 2)):.1%}",
         "ours": f"{overhead.fp_share(net(DATASET, 2, 2)):.1%}"},
        {"what": "FGSM / BIM / PGD \u03b5 (pixels in [0, 1])", "paper": "0.1 in normalised units",
         "ours": f"{fgsm['eps']:.4f} \u2248 {255 * fgsm['eps']:.2f}/255"},
        {"what": "BIM, PGD iterations", "paper": "40, 5 (Table 1)", "ours": f"{bim['nb_iter']}, {pgd['nb_iter']}"},
        {"what": "BIM, PGD step size (pixels in [0, 1])", "paper": "0.01 in normalised units",
         "ours": f"{pgd['eps_iter']:.5f} \u2248 {255 * pgd['eps_iter']:.3f}/255"},
        {"what": "training epochs", "paper": "not given (the original's schedule runs past epoch 80)",
         "ours": settings.RECIPES[DATASET]["epochs"]},
    ]
    return plots.markdown_table(rows, ["what", "paper", "ours"],
                                ["", "paper: AlexNet on ImageNet", "ours: AlexNet on Tiny ImageNet"])


def train_rate(model: keras.Model, batch: int = 32, repeats: int = 2, dataset: str = DATASET) -> float:
    """Images per second of one Keras training step (Adam, cross-entropy) on random images."""
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    xb = np.random.default_rng(0).uniform(size=(batch, *settings.INPUT_SHAPES[dataset])).astype(np.float32)
    yb = np.arange(batch) % settings.NUM_CLASSES[dataset]
    return batch / best_time(lambda: model.train_on_batch(xb, yb), repeats)


def width_rates(widths: tuple[float, ...] = (WIDTH, 2 * WIDTH), batch: int = 32) -> tuple[str, str]:
    """Training rates of the FP and a2w2 Tiny ImageNet AlexNet at each width: a Markdown table and a summary."""
    t0 = time.perf_counter()
    rates, rows = {}, []
    for width in widths:
        for wbits, abits in ((FULL_PRECISION, FULL_PRECISION), (2, 2)):
            rates[width, wbits] = train_rate(models.alexnet_tiny(wbits, abits, width=width), batch)
        fp, lp = rates[width, FULL_PRECISION], rates[width, 2]
        rows.append({"width": width, "fp": f"{fp:.0f}", "lp": f"{lp:.0f}", "ratio": f"{fp / lp:.2f}"})
    table = plots.markdown_table(rows, ["width", "fp", "lp", "ratio"],
                                 ["width", "FP, images/s", "a2w2, images/s", "a2w2 step time / FP step time"])
    a, b = widths[0], widths[-1]
    slower = rates[a, FULL_PRECISION] / rates[b, FULL_PRECISION]
    summary = (f"width {b} costs {slower:.1f}x the time of width {a} per FP step "
               f"(measured in {time.perf_counter() - t0:.0f} s, batches of {batch})")
    return table, summary


def fp_mac_share(model: keras.Model) -> float:
    """Fraction of a member's multiply-accumulates done at full precision (32 bits: its FP layers)."""
    rows = overhead.layer_macs(model)
    return sum(r["macs"] for r in rows if overhead.compute_bits(r["wbits"], r["abits"]) == FULL_PRECISION) / sum(
        r["macs"] for r in rows)


def ensemble_costs(ensembles: dict) -> dict:
    """Storage and time of EMPIR ensembles in FP models: Eq. 6, layer by layer, and bit-packed (measured).

    ``ensembles`` maps a label to ``(network name, [(wbits, abits), ...])``.  The
    full-size AlexNet is not packed (61 million weights; the count is exact anyway).
    """
    costs = {}
    for label, (name, config) in ensembles.items():
        m, lp = overhead.split_members(config)
        lps = [net(name, w, a) for w, a in lp]
        eq6 = overhead.ensemble_overheads(config)
        c = {"members": " + ".join(precision(w, a) for w, a in config), "eq6_storage": eq6["storage"],
             "layer_storage": m + sum(overhead.predicted_bytes(n) / overhead.float_bytes(n) for n in lps),
             "packed": None, "eq6_time": eq6["time"], "layer_time": m + sum(overhead.layerwise_time(n) for n in lps),
             "fp_share": ", ".join(f"{overhead.fp_share(n):.1%}" for n in lps),
             "fp_macs": ", ".join(f"{fp_mac_share(n):.1%}" for n in lps)}
        if name != PAPER:
            c["packed"] = m + sum(overhead.packed_bytes(overhead.pack_model(n)) / overhead.float_bytes(n)
                                  for n in lps)
        costs[label] = c
    return costs


def costs_table(costs: dict) -> str:
    """:func:`ensemble_costs` as Markdown."""
    return plots.markdown_table(
        [{"ensemble": k.replace("\n", " "), **v, "packed": tables.DASH if v["packed"] is None else f"{v['packed']:.4f}"}
         for k, v in costs.items()],
        ["ensemble", "members", "fp_share", "fp_macs", "eq6_storage", "layer_storage", "packed", "eq6_time",
         "layer_time"],
        ["ensemble", "members", "float32 share of each LP member's weights", "32-bit share of its MACs",
         "storage, Eq. 6", "storage, layer by layer", "storage, bit-packed (measured)", "time, Eq. 6",
         "time, layer by layer"],
        {"eq6_storage": ".4f", "layer_storage": ".4f", "eq6_time": ".4f", "layer_time": ".4f"})


def cost_panels(costs: dict) -> dict:
    """The two panels of ``plots.overhead_bars``: storage and time, Eq. 6 beside layer by layer."""
    return {"storage": {k: {"Eq. 6": v["eq6_storage"], "layer by layer": v["layer_storage"]}
                        for k, v in costs.items()},
            "execution time (Ops/s \u221d 1/bits)": {k: {"Eq. 6": v["eq6_time"], "layer by layer": v["layer_time"]}
                                                    for k, v in costs.items()}}


def overhead_verdicts(cost: dict, unit: str = "FP model", bound: float = PAPER_OVERHEAD_BOUND) -> list[str]:
    """Storage and time overhead over one ``unit``, Eq. 6 and layer by layer, against the paper's bound."""
    lines = []
    for what in ("storage", "time"):
        eq6, layer = cost[f"eq6_{what}"] - 1, cost[f"layer_{what}"] - 1
        verdict = "within" if layer < bound else "above"
        lines.append(f"{what} overhead over one {unit}: Eq. 6 {eq6:.1%}, layer by layer {layer:.1%} "
                     f"({verdict} the paper's <{bound:.0%})")
    return lines
