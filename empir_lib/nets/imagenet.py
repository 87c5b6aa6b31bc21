"""Full ImageNet (or any dataset) in the standard folder layout, streamed from disk.

``root/<split>/<wnid>/*.JPEG``: the paper's third benchmark cannot sit in
memory at 224 pixels, so it is read as a ``tf.data`` pipeline, resized,
cropped (randomly, seeded, when training) and scaled to [0, 1] on the fly.
Where ImageNet is looked for: ``data_dir``, else ``$EMPIR_IMAGENET_DIR``,
else ``$EMPIR_DATA_DIR/imagenet``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from ..core.errors import EmpirError, check_positive_int


def imagenet_root(data_dir: str | os.PathLike | None = None) -> Path:
    """Where full ImageNet lives: ``data_dir``, else ``$EMPIR_IMAGENET_DIR``, else ``$EMPIR_DATA_DIR/imagenet``."""
    if data_dir is not None:
        return Path(data_dir)
    if os.environ.get("EMPIR_IMAGENET_DIR"):
        return Path(os.environ["EMPIR_IMAGENET_DIR"])
    if os.environ.get("EMPIR_DATA_DIR"):
        return Path(os.environ["EMPIR_DATA_DIR"]) / "imagenet"
    raise EmpirError("full ImageNet is not bundled anywhere: pass --data-dir /path/to/imagenet (holding "
                     "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG) or set EMPIR_IMAGENET_DIR.")


def imagenet_files(root: str | os.PathLike, split: str) -> tuple[list[str], np.ndarray, list[str]]:
    """(files, labels, classes) of ``root/<split>/<wnid>/*.JPEG``; classes are the sorted folder names."""
    folder = Path(root) / split
    if not folder.is_dir():
        raise EmpirError(f"{folder} does not exist; expected the standard layout "
                         f"<root>/{{train,val}}/<wnid>/*.JPEG. Pass --data-dir /path/to/imagenet "
                         "(data_dir=...) or set EMPIR_IMAGENET_DIR.")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise EmpirError(f"{folder} has no class folders.")
    files, labels = [], []
    for i, c in enumerate(classes):
        for f in sorted((folder / c).iterdir()):
            if f.suffix.lower() in (".jpeg", ".jpg", ".png"):
                files.append(str(f))
                labels.append(i)
    if not files:
        raise EmpirError(f"{folder} has class folders but no .JPEG/.jpg/.png images in them.")
    return files, np.array(labels, np.int64), classes


def imagenet_dataset(root: str | os.PathLike, split: str = "val", image_size: int = 224, batch_size: int = 100,
                     shuffle: bool = False, seed: int = 0, augment: bool = False, n: int | None = None
                     ) -> tf.data.Dataset:
    """ImageNet (or any dataset) in the standard folder layout, as a ``tf.data`` pipeline of [0, 1] images.

    ``root/<split>/<wnid>/*.JPEG``; labels are 0-based indices of the sorted
    folder names (the original code, appendix section 8,
    book/appendix_original_code.ipynb: use 0..999 for both splits).
    Both paths resize the short side to 256/224 of ``image_size``; evaluation
    then centre-crops, training (``augment``) takes a random crop and a random
    left-right flip, seeded by ``seed``.  ``n`` keeps the first n files (after
    shuffling).  Streams from disk, so 224-pixel ImageNet never sits in memory.
    """
    files, labels, _ = imagenet_files(root, split)
    resize_to = int(round(image_size * 256 / 224))

    def load_one(i, path, label):
        img = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        shape = tf.cast(tf.shape(img)[:2], tf.float32)
        scale = resize_to / tf.reduce_min(shape)
        img = tf.image.resize(img, tf.cast(tf.round(shape * scale), tf.int32))
        if augment:  # stateless, keyed by (seed, position): a rerun sees the same crops
            key = tf.stack([tf.cast(seed, tf.int64), i])
            img = tf.image.stateless_random_crop(img, (image_size, image_size, 3), key)
            img = tf.image.stateless_random_flip_left_right(img, key + 1)
        else:
            img = tf.image.resize_with_crop_or_pad(img, image_size, image_size)
        return tf.clip_by_value(img / 255.0, 0.0, 1.0), label

    ds = tf.data.Dataset.from_tensor_slices((files, labels))
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=False)
    if n is not None:
        ds = ds.take(check_positive_int(n, "n"))
    ds = ds.enumerate().map(lambda i, fl: load_one(i, *fl), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(2)
