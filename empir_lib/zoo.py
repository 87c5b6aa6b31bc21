"""The model zoo: trained members in ``data/models`` plus a manifest.

``data/models/manifest.json`` records, for every member: dataset, network,
precision, seed, epochs, the command that trained it, git commit, training
time and hardware, its clean accuracy on the *full* test set, and the sha256
of its file.  Loading checks that sha256 first and then uses Keras' safe mode
(no pickle, no arbitrary code): a truncated or edited file is refused with a
message, never half-loaded.  Tiny ImageNet (and ImageNet) members are stored
as float16 weights in an ``.npz`` (``storage: float16``), rebuilt from the
manifest's network and precision, to keep ``data/models`` under its size budget.

``REQUIRED`` lists the members the chapters need; ``build_zoo`` trains what
is missing, one member at a time, resuming interrupted runs.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from . import data as data_mod
from . import evaluate, models, provenance, train
from .errors import EmpirError, check_choice

ZOO_DIR = provenance.REPO / "data" / "models"
GRID = [(w, a) for w in (1, 2, 4) for a in (1, 2, 4)]

# (wbits, abits, seed[, epochs]) per dataset: the FP baseline, the wbits x abits
# grid of Figures 1 and 3a (seed 1, the recipe's epochs), the paper's EMPIR
# members (Table 2) and the extra FP and a4w2 members of the Figure 4 sweep
# (up to three of each).  Two members of the same precision get distinct seeds
# (the original would have trained them identically: fact sheet section 3).
# The CIFAR EMPIR pair is trained longer (40 epochs) than the grid: at 15 epochs
# its training accuracy was still rising by about a point an epoch.
REQUIRED = {
    "mnist": [(32, 32, 1)] + [(w, a, 1) for w, a in GRID]
             + [(2, 4, 2), (32, 32, 2), (32, 32, 3), (2, 4, 3)],
    "cifar10": [(32, 32, 1)] + [(w, a, 1) for w, a in GRID] + [(4, 2, 2, 40), (2, 2, 2, 40)],
    # The paper's ImageNet EMPIR members (FP, a2w2, a4w4) on Tiny ImageNet, at the recipe's 10 epochs.
    "tiny-imagenet": [(32, 32, 1), (2, 2, 1), (4, 4, 1)],
}

# The paper's EMPIR configurations (Table 2 and the README of the original
# code): two low-precision members and one FP member, by zoo id.
EMPIR_MEMBERS = {
    "mnist": ["mnist-a4w2-s1", "mnist-a4w2-s2", "mnist-fp-s1"],
    "cifar10": ["cifar10-a2w4-s2", "cifar10-a2w2-s2", "cifar10-fp-s1"],
    # The paper's ImageNet configuration (a2w2, a4w4, FP) on Tiny ImageNet.
    "tiny-imagenet": ["tiny-imagenet-a2w2-s1", "tiny-imagenet-a4w4-s1", "tiny-imagenet-fp-s1"],
}


def manifest_path(zoo_dir=None) -> Path:
    return Path(zoo_dir or ZOO_DIR) / "manifest.json"


def read_manifest(zoo_dir=None) -> dict:
    path = manifest_path(zoo_dir)
    if not path.exists():
        return {"members": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise EmpirError(f"{path} is not valid JSON ({e}); restore it with 'git checkout {path}'.") from None


def _write_manifest(manifest: dict, zoo_dir=None) -> None:
    data_mod.atomic_write(manifest_path(zoo_dir),
                          lambda p: Path(p).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n"))


def members(dataset: str | None = None, zoo_dir=None) -> dict:
    """Manifest entries, optionally only those of one dataset."""
    m = read_manifest(zoo_dir)["members"]
    return {k: v for k, v in m.items() if dataset is None or v["dataset"] == dataset}


def find(dataset: str, wbits=32, abits=32, seed: int = 1) -> str:
    """The zoo id for a precision, e.g. ``find('mnist', 2, 4)`` -> 'mnist-a4w2-s1'."""
    return train.member_id(dataset, wbits, abits, seed)


def load(member: str, zoo_dir=None) -> keras.Model:
    """Load a zoo member by id after checking its sha256; Keras safe mode."""
    entries = read_manifest(zoo_dir)["members"]
    if member not in entries:
        raise EmpirError(f"unknown zoo member {member!r}; available: {', '.join(sorted(entries)) or 'none'}.")
    entry = entries[member]
    path = Path(zoo_dir or ZOO_DIR) / entry["file"]
    if not path.is_file():
        raise EmpirError(f"{path} is missing; restore it with 'git checkout -- {path}' or retrain with "
                         f"'{entry['command']}'.")
    actual = data_mod.sha256(path)
    if actual != entry["sha256"]:
        raise EmpirError(f"{path} has sha256 {actual} but the manifest says {entry['sha256']}: the file is "
                         f"truncated or tampered with. Restore it with 'git checkout -- {path}'.")
    if entry.get("storage") == "float16":
        return _load_float16(path, entry)
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # a file that matches its hash but will not load is a bug, say so plainly
        raise EmpirError(f"{path} could not be loaded by Keras ({type(e).__name__}: {e}).") from None


# Members of these datasets are stored as float16 weights (half the bytes of
# float32) so that three AlexNets fit the zoo's size budget beside the others.
FLOAT16_DATASETS = ("tiny-imagenet", "imagenet")


def _save_float16(model, path: Path) -> None:
    """The weights rounded to float16, one array per variable in ``model.weights`` order (no pickle)."""
    arrays = {f"w{i:03d}": np.asarray(v.numpy(), np.float16) for i, v in enumerate(model.weights)}
    data_mod.atomic_write(path, lambda p: np.savez(open(p, "wb"), **arrays))


def _load_float16(path: Path, entry: dict) -> keras.Model:
    """Rebuild the member's network from its manifest entry and load its float16 weights into it."""
    model = models.build(entry["arch"], entry["wbits"], entry["abits"], **entry.get("arch_kwargs", {}))
    with np.load(path, allow_pickle=False) as f:
        if len(f.files) != len(model.weights):
            raise EmpirError(f"{path} holds {len(f.files)} arrays but {entry['arch']} has {len(model.weights)} "
                             f"weights; restore it with 'git checkout -- {path}'.")
        for i, v in enumerate(model.weights):
            a = f[f"w{i:03d}"]
            if a.shape != tuple(v.shape):
                raise EmpirError(f"{path}: weight {v.path} has shape {a.shape}, expected {tuple(v.shape)}.")
            v.assign(a.astype(np.float32))
    return model


def add(result: dict, data_dir=None, zoo_dir=None, command: str | None = None) -> dict:
    """Register a finished training run: copy (or float16 weights), hash, full-test accuracy, manifest entry.

    For float16 members the accuracy is measured on the stored, rounded
    weights: the number in the manifest is the one a reader's load reproduces.
    """
    cfg = result["config"]
    mid = train.member_id(cfg["dataset"], cfg["wbits"], cfg["abits"], cfg["seed"])
    zoo = Path(zoo_dir or ZOO_DIR)
    model = result.get("model") or keras.saving.load_model(result["model_path"], compile=False, safe_mode=True)
    t0 = time.perf_counter()
    storage = "float16" if cfg["dataset"] in FLOAT16_DATASETS else "keras"
    x, y = data_mod.load(cfg["dataset"], "test", data_dir)
    extra = {}
    if storage == "float16":
        dest = zoo / f"{mid}.f16.npz"
        _save_float16(model, dest)
        # Rounding can flip a quantiser's decision near a level boundary: record both accuracies.
        extra["test_accuracy_float32"] = evaluate.accuracy(model, x, y)
        model = _load_float16(dest, cfg)
    else:
        dest = zoo / f"{mid}.keras"
        data_mod.atomic_write(dest, lambda p: shutil.copyfile(result["model_path"], p))
    acc = evaluate.accuracy(model, x, y)
    prov = provenance.record(command)
    entry = {"dataset": cfg["dataset"], "arch": cfg["arch"], "arch_kwargs": cfg["arch_kwargs"],
             "wbits": cfg["wbits"], "abits": cfg["abits"], "seed": cfg["seed"], "epochs": cfg["epochs"],
             "batch_size": cfg["batch_size"], "lr": cfg["lr"], "label_smoothing": cfg["label_smoothing"],
             "n_train": cfg["n_train"] or len(data_mod.load(cfg["dataset"], "train", data_dir)[1]),
             "train_time_s": round(result["train_time_s"], 1), "history": result["history"],
             "test_accuracy": acc, "n_test": int(len(y)), "eval_time_s": round(time.perf_counter() - t0, 1),
             "distribute": result.get("distribute", {"strategy": "_DefaultDistributionStrategy", "replicas": 1}),
             **extra, "storage": storage, "file": dest.name, "sha256": data_mod.sha256(dest), "size_bytes": dest.stat().st_size, **prov}
    manifest = read_manifest(zoo)
    manifest["members"][mid] = entry
    _write_manifest(manifest, zoo)
    return entry


def verify(zoo_dir=None) -> list[str]:
    """Problems with the zoo (missing or mismatched files); empty when all is well."""
    problems = []
    for mid, e in read_manifest(zoo_dir)["members"].items():
        path = Path(zoo_dir or ZOO_DIR) / e["file"]
        if not path.is_file():
            problems.append(f"{mid}: {path} is missing")
        elif data_mod.sha256(path) != e["sha256"]:
            problems.append(f"{mid}: {path} does not match its sha256")
    return problems


def build_zoo(dataset: str, epochs: int | None = None, data_dir=None, progress: bool = True,
              runs_dir="runs", only: list[str] | None = None) -> list[str]:
    """Train and register every ``REQUIRED`` member of ``dataset`` not yet in the zoo."""
    check_choice(dataset, tuple(REQUIRED), "dataset")
    done = []
    for wbits, abits, seed, *own_epochs in REQUIRED[dataset]:
        mid = train.member_id(dataset, wbits, abits, seed)
        if mid in members(dataset) or (only and mid not in only):
            continue
        n_epochs = epochs or (own_epochs[0] if own_epochs else None)
        cmd = (f"empir train --dataset {dataset} --wbits {wbits} --abits {abits} --seed {seed}"
               + (f" --epochs {n_epochs}" if n_epochs else "") + " --zoo")
        result = train.train_member(dataset, wbits, abits, seed, n_epochs, Path(runs_dir) / mid, data_dir,
                                    progress=progress)
        entry = add(result, data_dir, command=cmd)
        print(f"{mid}: test accuracy {entry['test_accuracy']:.4f} after {entry['epochs']} epochs "
              f"({entry['train_time_s']:.0f} s)", flush=True)
        done.append(mid)
    return done
