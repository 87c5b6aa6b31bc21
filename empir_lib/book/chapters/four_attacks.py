"""The four attacks run side by side on one model (chapter 2): their parameters, run times and norms."""
from __future__ import annotations

import time

import numpy as np

from ...attack import attacks
from ...core import settings
from ...nets import ensemble
from ...studies import results
from .. import plots

NAMES = {"eps": "ε", "eps_iter": "α", "nb_iter": "iterations", "max_iterations": "iterations",
         "binary_search_steps": "search steps", "learning_rate": "lr", "initial_const": "c",
         "confidence": "κ", "abort_early": "early abort", "batch_size": "batch"}


def describe(params: dict) -> str:
    """An attack's parameters in the paper's symbols, e.g. 'ε = 0.3, α = 0.01, iterations = 40'."""
    return ", ".join(f"{NAMES.get(k, k)} = {v:.3g}" if isinstance(v, float) else f"{NAMES.get(k, k)} = {v}"
                     for k, v in params.items())


def parameters_table() -> str:
    """Every dataset's attack presets as Markdown, one row per dataset."""
    rows = [{"dataset": ds, **{a: describe(attacks.preset(ds, a)) for a in attacks.ATTACKS}}
            for ds in settings.ATTACK_PRESETS]
    return plots.markdown_table(rows, ["dataset", *attacks.ATTACKS], ["dataset", "FGSM", "BIM", "PGD", "CW-L2"])


def run_all(ens: ensemble.Ensemble, x: np.ndarray, y: np.ndarray, dataset: str,
            protocol: str = "paper") -> tuple[dict, dict]:
    """Each of the four attacks on ``x``: ({attack: adversarial images}, {attack: seconds})."""
    adversarial, seconds = {}, {}
    for name in attacks.ATTACKS:
        t0 = time.perf_counter()
        adversarial[name] = attacks.generate(ens, name, x, y, protocol=protocol, dataset=dataset)
        seconds[name] = time.perf_counter() - t0
    return adversarial, seconds


def bound_checks(x: np.ndarray, adversarial: dict, dataset: str) -> list[str]:
    """Per attack: are the pixels in [0, 1], and is the L-infinity change within its eps (L2 attacks have none)?"""
    lines = []
    for name, xa in adversarial.items():
        bound = attacks.preset(dataset, name).get("eps")
        inside = ("no eps (L2 attack)" if bound is None
                  else f"max |x_adv - x| <= eps = {bound}: {np.abs(xa - x).max() <= bound + 1e-6}")
        lines.append(f"{name.upper():5s} pixels in [0, 1]: {bool(xa.min() >= 0 and xa.max() <= 1)};  {inside}")
    return lines


def summary_table(ens: ensemble.Ensemble, x: np.ndarray, y: np.ndarray, adversarial: dict, dataset: str) -> str:
    """Accuracy under each attack beside the paper's baseline row, and the mean L2 and L-inf perturbation."""
    paper = results.paper_table2(dataset)["baseline"]
    rows = [{"attack": "none (clean)", "ours": float(np.mean(ensemble.predict(ens, x) == y)),
             "paper": paper["clean"] / 100, "l2": 0.0, "linf": 0.0}]
    for name, xa in adversarial.items():
        d = (xa - x).reshape(len(x), -1)
        rows.append({"attack": name.upper(), "ours": float(np.mean(ensemble.predict(ens, xa) == y)),
                     "paper": paper[name] / 100, "l2": float(np.sqrt((d ** 2).sum(1)).mean()),
                     "linf": float(np.abs(d).max(1).mean())})
    return plots.markdown_table(
        rows, ["attack", "ours", "paper", "l2", "linf"],
        ["attack", f"accuracy, ours ({len(y)} images)", "accuracy, paper's Table 2 (10,000 images)",
         "mean L2 of X_adv - X", "mean L-inf"], {"ours": ".1%", "paper": ".2%", "l2": ".2f", "linf": ".3f"})
