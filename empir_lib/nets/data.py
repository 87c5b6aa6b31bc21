"""MNIST, CIFAR-10 and Tiny ImageNet loaded into memory, offline first.

(Full ImageNet streams from its folder layout: :mod:`empir_lib.nets.imagenet`.)

Where data is looked for, in order:

1. the ``data_dir`` argument;
2. the ``EMPIR_DATA_DIR`` environment variable (here: ``../shared/datasets``);
3. Keras' own download (MNIST and CIFAR-10 only), for readers who are online.

The offline copies are checked against their sha256 before they are decoded.
Decoded arrays are cached as ``.npz`` under ``EMPIR_CACHE_DIR`` (default
``~/.cache/empir``), with the cache's own sha256 beside it, checked on every load.

Images come back as float32 NHWC in [0, 1] (no mean subtraction, as in the
original MNIST/CIFAR code), labels as int64 class ids.

The CIFAR-10 copy here is stored as JPEG files sorted by class, so its pixels
differ slightly from the original pickled batches and its original order is
lost.  We apply one fixed permutation (``RandomState(0)``) to each split when
the cache is built, so that "the first N test images" is a class-mixed subset.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from ..core import files, settings
from ..core.errors import EmpirError, check_choice, check_positive_int
from ..core.files import atomic_write, cache_dir, sha256

DATASETS = tuple(settings.DATASETS)
SAMPLES_DIR = files.REPO / "data" / "samples"
CACHE_VERSION = 1
DataDir = str | os.PathLike | None


def _candidate_dirs(data_dir: DataDir) -> list[tuple[str, Path]]:
    out = []
    if data_dir is not None:
        out.append(("data_dir argument", Path(data_dir)))
    if os.environ.get("EMPIR_DATA_DIR"):
        out.append(("EMPIR_DATA_DIR", Path(os.environ["EMPIR_DATA_DIR"])))
    return out


def find_archive(name: str, data_dir: DataDir = None) -> Path | None:
    """The offline copy of ``name`` in the first directory that has it."""
    fname = settings.ARCHIVES[name][0]
    for _, d in _candidate_dirs(data_dir):
        if (d / fname).is_file():
            return d / fname
    return None


def _missing(name: str, data_dir: DataDir, download_error: Exception | None = None) -> EmpirError:
    looked = [f"{label} = {d.resolve()}" for label, d in _candidate_dirs(data_dir)] or \
             ["no data_dir argument and no EMPIR_DATA_DIR set"]
    msg = (f"dataset {name!r} not found. Looked for {settings.ARCHIVES[name][0]} in: " + "; ".join(looked) + ".")
    if download_error is not None:
        msg += f" The Keras download failed too ({type(download_error).__name__}: {download_error})."
    msg += (f" Fix: set EMPIR_DATA_DIR to the folder holding {settings.ARCHIVES[name][0]} "
            "(in this project: EMPIR_DATA_DIR=../shared/datasets), pass data_dir=..., or go online"
            " (MNIST and CIFAR-10 download themselves). The quick profile runs without it:"
            " use load_sample().")
    return EmpirError(msg)


def _verify_archive(path: Path, name: str) -> None:
    expected = settings.ARCHIVES[name][1]
    actual = sha256(path)
    if actual != expected:
        raise EmpirError(f"{path} has sha256 {actual}, expected {expected}: the file is corrupted or "
                         "not the copy this project was built on. Replace it with a fresh copy.")


# --- the cache ------------------------------------------------------------------------


def _cache_paths(name: str) -> tuple[Path, Path]:
    base = cache_dir() / f"{name}-v{CACHE_VERSION}"
    return base.with_suffix(".npz"), base.with_suffix(".json")


def _load_cache(name: str, archive: Path) -> dict | None:
    npz, meta_path = _cache_paths(name)
    if not (npz.is_file() and meta_path.is_file()):
        return None
    meta = json.loads(meta_path.read_text())
    stat = archive.stat()
    if meta.get("archive_size") != stat.st_size or meta.get("archive_mtime") != int(stat.st_mtime):
        return None  # the source changed: rebuild
    if sha256(npz) != meta.get("cache_sha256"):
        raise EmpirError(f"the decoded cache {npz} fails its sha256 check (corrupted or edited). "
                         "Delete it and it will be rebuilt from the archive.")
    with np.load(npz, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _save_cache(name: str, archive: Path, arrays: dict) -> None:
    npz, meta_path = _cache_paths(name)
    atomic_write(npz, lambda p: np.savez(open(p, "wb"), **arrays))
    stat = archive.stat()
    meta = {"archive": str(archive), "archive_sha256": settings.ARCHIVES[name][1], "archive_size": stat.st_size,
            "archive_mtime": int(stat.st_mtime), "cache_sha256": sha256(npz)}
    atomic_write(meta_path, lambda p: Path(p).write_text(json.dumps(meta, indent=1)))


def _decode_jpegs(items: list[bytes], desc: str) -> np.ndarray:
    # Only when decoding: tqdm.auto warns in a notebook without ipywidgets.
    from tqdm.auto import tqdm  # noqa: PLC0415

    return np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.uint8)
                     for b in tqdm(items, desc=desc, unit="img", mininterval=2)])


def _decode_cifar(archive: Path) -> dict:
    labels = {c: i for i, c in enumerate(settings.CIFAR10.class_names)}
    files = {"train": [], "test": []}
    with tarfile.open(archive, "r:gz") as tar:
        for m in tar:
            parts = m.name.split("/")
            if m.isfile() and m.name.endswith(".jpg") and len(parts) == 4:
                files[parts[1]].append((parts[2], parts[3], tar.extractfile(m).read()))
    out = {}
    for split, items in files.items():
        items.sort(key=lambda t: (labels[t[0]], t[1]))
        perm = np.random.RandomState(0).permutation(len(items))
        items = [items[i] for i in perm]
        out[f"x_{split}"] = _decode_jpegs([t[2] for t in items], f"decoding CIFAR-10 {split}")
        out[f"y_{split}"] = np.array([labels[t[0]] for t in items], dtype=np.int64)
    return out


def _decode_tiny_imagenet(archive: Path) -> dict:
    train, val, ann, wnids = [], [], {}, None
    with tarfile.open(archive, "r:gz") as tar:
        for m in tar:
            if not m.isfile():
                continue
            p = m.name.split("/")
            if p[-1] == "wnids.txt" and len(p) == 2:
                wnids = tar.extractfile(m).read().decode().split()
            elif p[-1] == "val_annotations.txt":
                for line in tar.extractfile(m).read().decode().splitlines():
                    f, wnid = line.split("\t")[:2]
                    ann[f] = wnid
            elif p[-1].endswith(".JPEG") and p[1] == "train":
                train.append((p[2], p[-1], tar.extractfile(m).read()))
            elif p[-1].endswith(".JPEG") and p[1] == "val":
                val.append((p[-1], tar.extractfile(m).read()))
    if wnids is None:
        raise EmpirError(f"{archive} has no wnids.txt: not the standard Tiny ImageNet layout.")
    idx = {w: i for i, w in enumerate(sorted(wnids))}
    train.sort(key=lambda t: (t[0], t[1]))
    perm = np.random.RandomState(0).permutation(len(train))
    train = [train[i] for i in perm]
    val.sort(key=lambda t: int(t[0].split("_")[1].split(".")[0]))
    return {"x_train": _decode_jpegs([t[2] for t in train], "decoding Tiny ImageNet train"),
            "y_train": np.array([idx[t[0]] for t in train], dtype=np.int64),
            "x_test": _decode_jpegs([t[1] for t in val], "decoding Tiny ImageNet val"),
            "y_test": np.array([idx[ann[t[0]]] for t in val], dtype=np.int64),
            "wnids": np.array(sorted(wnids))}


def _keras_download(name: str) -> dict:
    (xtr, ytr), (xte, yte) = getattr(keras.datasets, name).load_data()
    return {"x_train": xtr, "y_train": ytr.reshape(-1).astype(np.int64),
            "x_test": xte, "y_test": yte.reshape(-1).astype(np.int64)}


def _raw(name: str, data_dir: DataDir) -> dict:
    archive = find_archive(name, data_dir)
    if archive is None:
        if name == "tiny-imagenet":
            raise _missing(name, data_dir)
        try:
            return _keras_download(name)
        except Exception as e:  # no network, proxy, ...: one clear message instead
            raise _missing(name, data_dir, e) from None
    if name == "mnist":
        _verify_archive(archive, name)
        with np.load(archive, allow_pickle=False) as f:
            return {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    cached = _load_cache(name, archive)
    if cached is None:
        _verify_archive(archive, name)
        cached = (_decode_cifar if name == "cifar10" else _decode_tiny_imagenet)(archive)
        _save_cache(name, archive, cached)
    return cached


def describe_source(name: str, data_dir: DataDir = None) -> dict:
    """Which copy of ``name`` a full-split load reads: the offline archive (and its sha256) or Keras."""
    archive = find_archive(name, data_dir) if name in settings.ARCHIVES else None
    if archive is None:
        return {"source": "keras.datasets download" if name in ("mnist", "cifar10") else "missing"}
    note = " (JPEG re-encoding of CIFAR-10; pixels differ slightly from the original)" if name == "cifar10" else ""
    return {"source": f"{settings.ARCHIVES[name][0]}{note}", "sha256": settings.ARCHIVES[name][1]}


def to_float(x: np.ndarray, name: str) -> np.ndarray:
    """uint8 images to float32 NHWC in [0, 1]."""
    x = x.astype(np.float32) / 255.0
    return x.reshape((-1, *settings.INPUT_SHAPES[name]))


def load(name: str, split: str = "test", data_dir: DataDir = None, n: int | None = None
         ) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x, y)`` for one split: x float32 NHWC in [0, 1], y int64.

    ``split`` is 'train' or 'test' (Tiny ImageNet's 'test' is its labelled
    ``val`` folder, as is usual).  ``n`` keeps the first n images.
    For full ImageNet use :func:`empir_lib.nets.imagenet.imagenet_dataset`.
    """
    check_choice(name, settings.IN_MEMORY, "dataset")
    split = "test" if split == "val" else split
    check_choice(split, settings.SPLITS, "split")
    # Every argument is checked before any data is looked for, so a bad one is named even offline.
    if n is not None:
        n = check_positive_int(n, "n")
    raw = _raw(name, data_dir)
    x, y = raw[f"x_{split}"], raw[f"y_{split}"]
    if n is not None:
        x, y = x[:n], y[:n]
    return to_float(x, name), y.astype(np.int64)


def sample_path(name: str) -> Path:
    return SAMPLES_DIR / f"{name}-test-sample.npz"


def load_sample(name: str, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The small embedded test subset in ``data/samples`` (no data directory needed).

    It is the first images of the test split, written by ``empir samples <name>``.
    """
    check_choice(name, settings.IN_MEMORY, "dataset")
    path = sample_path(name)
    if not path.is_file():
        raise EmpirError(f"the embedded sample {path} is missing; regenerate it with "
                         f"'empir samples {name}' (needs EMPIR_DATA_DIR).")
    with np.load(path, allow_pickle=False) as f:
        x, y = f["x"], f["y"]
    if n is not None:
        n = check_positive_int(n, "n")
        if n > len(x):
            raise EmpirError(f"n={n} but the embedded {name} sample holds {len(x)} images.")
        x, y = x[:n], y[:n]
    return to_float(x, name), y.astype(np.int64)


def load_for_profile(name: str, profile: str = "quick", n: int | None = None, data_dir: DataDir = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Test images for a profile: the embedded sample (quick) or the full test set (full)."""
    check_choice(profile, ("quick", "full"), "profile")
    return load_sample(name, n) if profile == "quick" else load(name, "test", data_dir, n)
