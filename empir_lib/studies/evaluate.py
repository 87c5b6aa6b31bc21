"""Adversarial accuracy of an ensemble: attack batch by batch, resumably, and score the result.

Accuracy is the fraction of images whose predicted class equals the *true*
label, as in the original ``model_eval`` (the original code, appendix
section 5, book/appendix_original_code.ipynb).  Clean accuracy of one model
is :mod:`empir_lib.nets.metrics`; the results files (JSON, written atomically,
with full provenance) are read and written by :mod:`empir_lib.studies.results`.
"""
from __future__ import annotations

import os
import time

import numpy as np
from numpy.typing import ArrayLike

from ..attack import attacks, validate
from ..core import partial
from ..core.errors import EmpirError, check_choice, check_positive_int
from ..nets import ensemble
from ..nets.metrics import accuracy, predict_logits
from ..nets.models import check_images
from .results import RESULTS_DIR, read_result, write_result

# Names other modules and the chapters import from here.
__all__ = ["RESULTS_DIR", "accuracy", "adversarial_accuracy", "predict_logits", "read_result", "write_result"]


def adversarial_accuracy(ens: ensemble.Ensemble, attack: str, x: ArrayLike, y: ArrayLike, protocol: str = "paper",
                         objective: str | None = None, params: dict | None = None, dataset: str | None = None,
                         seed: int = 0, batch_size: int = 500, progress: bool = True,
                         partial_path: str | os.PathLike | None = None) -> dict:
    """Attack ``x`` batch by batch and score the ensemble on the result (appendix section 5).

    Adversarial accuracy is the fraction of adversarial images whose
    predicted class equals the *true* label (clean mistakes count as
    failures).  With ``partial_path``, finished batches are saved there
    (atomically) and a rerun with the same configuration skips them; a
    different configuration is refused rather than mixed in.
    Returns the summary plus per-image arrays (``adv_pred``, ``l2``, ``linf``).
    """
    check_choice(attack, attacks.ATTACKS, "attack")
    check_choice(protocol, attacks.PROTOCOLS, "protocol")
    x = check_images(x, ens.input_shape)
    y = np.asarray(y).reshape(-1).astype(np.int64)
    if len(y) != len(x):
        raise EmpirError(f"{len(x)} images but {len(y)} labels.")
    if len(y) == 0:
        raise EmpirError("nothing to evaluate: pass at least one image.")
    batch_size = check_positive_int(batch_size, "batch_size")
    if params is None:
        if dataset is None:
            raise EmpirError("pass params=... or dataset=... (to use the paper's Table 1 preset).")
        params = attacks.preset(dataset, attack)
    params = attacks.check_params(attack, params)
    objective = objective or attacks.objective_for(ens, attack, protocol)
    config = {"members": list(ens.names), "rule": ens.rule, "attack": attack, "protocol": protocol,
              "objective": objective, "params": params, "seed": seed, "n": len(y), "batch_size": batch_size,
              "labels": "clean prediction" if protocol == "paper" else "true label"}

    t0 = time.perf_counter()
    clean_pred = ensemble.predict(ens, x)
    labels = clean_pred.astype(np.int32) if protocol == "paper" else attacks.attack_labels(ens, x, y, protocol)
    run = attacks.compile_attack(ens, attack, objective, params, clip_start=protocol != "paper")
    done = _load_partial(partial_path, config)
    before = done["elapsed_s"]  # seconds spent by earlier, interrupted invocations
    starts = list(range(0, len(x), batch_size))
    if progress:
        # Only when shown: tqdm.auto warns in a notebook without ipywidgets.
        from tqdm.auto import tqdm  # noqa: PLC0415

        bar = tqdm(starts, desc=f"{attack}/{protocol}/{objective}", unit="batch", mininterval=2)
    else:
        bar = starts
    for bi, i in enumerate(bar):
        if bi < done["batches"]:
            continue
        xb = x[i:i + batch_size]
        xa = run(xb, labels[i:i + batch_size], seed * 1_000_003 + bi)
        l2, linf = validate.perturbation_norms(xb, xa)
        done["adv_pred"].append(ensemble.predict(ens, xa))
        done["l2"].append(l2)
        done["linf"].append(linf)
        done["batches"] = bi + 1
        done["elapsed_s"] = before + time.perf_counter() - t0
        if partial_path is not None:
            _save_partial(partial_path, config, done)
    if progress:
        bar.close()
    adv_pred = np.concatenate(done["adv_pred"])
    l2, linf = np.concatenate(done["l2"]), np.concatenate(done["linf"])
    correct = adv_pred == y
    out = {**config,
           "clean_accuracy": round(float(np.mean(clean_pred == y)), 6),
           "adversarial_accuracy": round(float(np.mean(correct)), 6),
           "attack_success_rate": round(float(np.mean(adv_pred != clean_pred)), 6),
           "mean_l2": round(float(l2.mean()), 6), "max_linf": round(float(linf.max()), 6),
           "wall_time_s": round(before + time.perf_counter() - t0, 1),
           "adv_pred": adv_pred, "l2": l2, "linf": linf, "clean_pred": clean_pred}
    if ens.num_classes <= 10:
        out["confusion"] = np.bincount(y * ens.num_classes + adv_pred,
                                       minlength=ens.num_classes ** 2).reshape(ens.num_classes, -1).tolist()
    return out


def _load_partial(path: str | os.PathLike | None, config: dict) -> dict:
    empty = {"batches": 0, "adv_pred": [], "l2": [], "linf": [], "elapsed_s": 0.0}
    f = partial.load(path, config, "a partial evaluation", "delete it or pass another output path")
    if f is None:
        return empty
    split = np.cumsum(f["sizes"].tolist())[:-1]
    return {"batches": int(f["batches"]), "adv_pred": np.split(f["adv_pred"], split), "l2": np.split(f["l2"], split),
            "linf": np.split(f["linf"], split), "elapsed_s": float(f["elapsed_s"]) if "elapsed_s" in f else 0.0}


def _save_partial(path: str | os.PathLike, config: dict, done: dict) -> None:
    partial.save(path, config, {"batches": done["batches"], "sizes": [len(a) for a in done["adv_pred"]],
                                "adv_pred": np.concatenate(done["adv_pred"]), "l2": np.concatenate(done["l2"]),
                                "linf": np.concatenate(done["linf"]), "elapsed_s": done["elapsed_s"]})
