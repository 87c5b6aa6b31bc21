"""The model zoo: trained members in ``data/models`` plus a manifest.

``data/models/manifest.json`` records, for every member: dataset, network,
precision, seed, epochs, the command that trained it, git commit, training
time and hardware, its clean accuracy on the *full* test set, and the sha256
of its file.  Loading checks that sha256 first and then uses Keras' safe mode
(no pickle, no arbitrary code): a truncated or edited file is refused with a
message, never half-loaded.  Tiny ImageNet (and ImageNet) members are stored
as float16 weights in an ``.npz`` (``storage: float16``), rebuilt from the
manifest's network and precision, to keep ``data/models`` under its size budget.

``settings.ZOO_MEMBERS`` lists the members the chapters need (``settings.DATASETS[name].zoo``);
``build_zoo`` trains what is missing, one member at a time, resuming
interrupted runs.  Zoo ids are built by :func:`empir_lib.core.settings.member_id`.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from ..core import defences, files, provenance, settings
from ..core.errors import FULL_PRECISION, EmpirError
from ..core.files import atomic_write, sha256, write_json
from . import data as data_mod
from . import metrics, models

ZOO_DIR = files.REPO / "data" / "models"
ZooDir = str | os.PathLike | None


def manifest_path(zoo_dir: ZooDir = None) -> Path:
    """Where the zoo's manifest lives."""
    return Path(zoo_dir or ZOO_DIR) / "manifest.json"


def read_manifest(zoo_dir: ZooDir = None) -> dict:
    """The manifest (``{'members': {}}`` when the zoo is empty)."""
    path = manifest_path(zoo_dir)
    return files.read_manifest(path, f"restore it with 'git checkout {path}'")


def _write_manifest(manifest: dict, zoo_dir: ZooDir = None) -> None:
    write_json(manifest_path(zoo_dir), manifest)


def members(dataset: str | None = None, zoo_dir: ZooDir = None) -> dict:
    """Manifest entries, optionally only those of one dataset."""
    m = read_manifest(zoo_dir)["members"]
    return {k: v for k, v in m.items() if dataset is None or v["dataset"] == dataset}


def find(dataset: str, wbits: models.Bits = FULL_PRECISION, abits: models.Bits = FULL_PRECISION,
         seed: int = 1) -> str:
    """The zoo id for a precision, e.g. ``find('mnist', 2, 4)`` -> 'mnist-a4w2-s1'."""
    return settings.member_id(dataset, wbits, abits, seed)


def load(member: str, zoo_dir: ZooDir = None) -> keras.Model:
    """Load a zoo member by id after checking its sha256; Keras safe mode."""
    entries = read_manifest(zoo_dir)["members"]
    if member not in entries:
        raise EmpirError(f"unknown zoo member {member!r}; available: {', '.join(sorted(entries)) or 'none'}.")
    entry = entries[member]
    path = Path(zoo_dir or ZOO_DIR) / entry["file"]
    if not path.is_file():
        raise EmpirError(f"{path} is missing; restore it with 'git checkout -- {path}' or retrain with "
                         f"'{entry['command']}'.")
    actual = sha256(path)
    if actual != entry["sha256"]:
        raise EmpirError(f"{path} has sha256 {actual} but the manifest says {entry['sha256']}: the file is "
                         f"truncated or tampered with. Restore it with 'git checkout -- {path}'.")
    if entry.get("storage") == "float16":
        return _load_float16(path, entry)
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # a file that matches its hash but will not load is a bug, say so plainly
        raise EmpirError(f"{path} could not be loaded by Keras ({type(e).__name__}: {e}).") from None


def _save_float16(model: keras.Model, path: Path) -> None:
    """The weights rounded to float16, one array per variable in ``model.weights`` order (no pickle)."""
    arrays = {f"w{i:03d}": np.asarray(v.numpy(), np.float16) for i, v in enumerate(model.weights)}
    atomic_write(path, lambda p: np.savez(open(p, "wb"), **arrays))


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


def add(result: dict, data_dir: str | os.PathLike | None = None, zoo_dir: ZooDir = None,
        command: str | None = None) -> dict:
    """Register a finished training run: copy (or float16 weights), hash, full-test accuracy, manifest entry.

    For float16 members the accuracy is measured on the stored, rounded
    weights: the number in the manifest is the one a reader's load reproduces.
    """
    mid, entry = store(result, data_dir, zoo_dir, command)
    register({mid: entry}, zoo_dir)
    return entry


def store(result: dict, data_dir: str | os.PathLike | None = None, zoo_dir: ZooDir = None,
          command: str | None = None) -> tuple[str, dict]:
    """:func:`add` without the manifest: the member's file written into the zoo, and its id and entry.

    A parallel build (:mod:`empir_lib.studies.parallel`) stores members in
    its workers and registers them all from one process, so that two tasks
    never rewrite the manifest at once.
    """
    cfg = result["config"]
    defence = cfg.get("defence", "none")
    mid = settings.member_id(cfg["dataset"], cfg["wbits"], cfg["abits"], cfg["seed"],
                             defences.tag(defence, cfg.get("defence_params")))
    zoo = Path(zoo_dir or ZOO_DIR)
    model = result.get("model") or keras.saving.load_model(result["model_path"], compile=False, safe_mode=True)
    t0 = time.perf_counter()
    storage = "float16" if cfg["dataset"] in settings.FLOAT16_DATASETS else "keras"
    x, y = data_mod.load(cfg["dataset"], "test", data_dir)
    extra = {}
    if storage == "float16":
        dest = zoo / f"{mid}.f16.npz"
        _save_float16(model, dest)
        # Rounding can flip a quantiser's decision near a level boundary: record both accuracies.
        extra["test_accuracy_float32"] = metrics.accuracy(model, x, y)
        model = _load_float16(dest, cfg)
    else:
        dest = zoo / f"{mid}.keras"
        atomic_write(dest, lambda p: shutil.copyfile(result["model_path"], p))
    acc = metrics.accuracy(model, x, y)
    prov = provenance.record(command)
    entry = {"dataset": cfg["dataset"], "arch": cfg["arch"], "arch_kwargs": cfg["arch_kwargs"],
             "wbits": cfg["wbits"], "abits": cfg["abits"], "seed": cfg["seed"], "epochs": cfg["epochs"],
             "batch_size": cfg["batch_size"], "lr": cfg["lr"], "label_smoothing": cfg["label_smoothing"],
             **({"defence": defence, "defence_params": cfg["defence_params"]} if defence != "none" else {}),
             "n_train": cfg["n_train"] or len(data_mod.load(cfg["dataset"], "train", data_dir)[1]),
             "train_time_s": round(result["train_time_s"], 1), "history": result["history"],
             **({"teacher_train_time_s": round(result["teacher_train_time_s"], 1)}
                if "teacher_train_time_s" in result else {}),
             "test_accuracy": acc, "n_test": int(len(y)), "eval_time_s": round(time.perf_counter() - t0, 1),
             "distribute": result.get("distribute", {"strategy": "_DefaultDistributionStrategy", "replicas": 1}),
             **extra, "storage": storage, "file": dest.name, "sha256": sha256(dest),
             "size_bytes": dest.stat().st_size, **prov}
    return mid, entry


def register(entries: dict[str, dict], zoo_dir: ZooDir = None) -> None:
    """Add (or replace) manifest entries whose files are already in the zoo, in one rewrite of the manifest."""
    zoo = Path(zoo_dir or ZOO_DIR)
    missing = [e["file"] for e in entries.values() if not (zoo / e["file"]).is_file()]
    if missing:
        raise EmpirError(f"the zoo lacks {', '.join(missing)}: copy a member's file in before its manifest entry.")
    manifest = read_manifest(zoo)
    manifest["members"].update(entries)
    _write_manifest(manifest, zoo)


def verify(zoo_dir: ZooDir = None) -> list[str]:
    """Problems with the zoo (missing or mismatched files); empty when all is well."""
    problems = []
    for mid, e in read_manifest(zoo_dir)["members"].items():
        path = Path(zoo_dir or ZOO_DIR) / e["file"]
        if not path.is_file():
            problems.append(f"{mid}: {path} is missing")
        elif sha256(path) != e["sha256"]:
            problems.append(f"{mid}: {path} does not match its sha256")
    return problems
