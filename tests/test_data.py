"""Loaders: embedded samples, offline copies, checksums, the cache, clear messages."""
import os
import shutil

import numpy as np
import pytest

from empir_lib.core import files
from empir_lib.core.errors import EmpirError
from empir_lib.nets import data, imagenet

MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.parametrize("name,shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_sample_needs_no_data_dir(monkeypatch, name, shape):
    monkeypatch.delenv("EMPIR_DATA_DIR", raising=False)
    x, y = data.load_sample(name)
    assert x.shape == (500, *shape) and x.dtype == np.float32 and y.shape == (500,)
    assert 0.0 <= x.min() and x.max() <= 1.0 and len(np.unique(y)) == 10


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_sample_is_the_start_of_the_test_split(data_dir, name):
    xs, ys = data.load_sample(name, n=50)
    x, y = data.load(name, "test", n=50)
    np.testing.assert_allclose(xs, x, atol=1 / 255 / 2)
    np.testing.assert_array_equal(ys, y)


def test_mnist_full_split_matches_official_counts(data_dir):
    x, y = data.load("mnist", "test")
    assert x.shape == (10000, 28, 28, 1)
    assert np.bincount(y).tolist() == MNIST_TEST_COUNTS
    assert data.load("mnist", "train")[0].shape == (60000, 28, 28, 1)


def test_cifar_split_and_cache(data_dir, tmp_path, monkeypatch):
    x, y = data.load("cifar10", "test")
    assert x.shape == (10000, 32, 32, 3) and np.bincount(y).tolist() == [1000] * 10
    # The fixed permutation mixes the classes: the first 100 hold many of them.
    assert len(np.unique(y[:100])) == 10
    # A tampered cache is refused, not silently used.
    npz, meta = data._cache_paths("cifar10")
    monkeypatch.setenv("EMPIR_CACHE_DIR", str(tmp_path))
    shutil.copy(npz, tmp_path / npz.name)
    shutil.copy(meta, tmp_path / meta.name)
    raw = bytearray((tmp_path / npz.name).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / npz.name).write_bytes(bytes(raw))
    with pytest.raises(EmpirError, match="sha256"):
        data.load("cifar10", "test")


def test_tampered_archive_is_refused(data_dir, tmp_path):
    raw = bytearray((data_dir / "mnist.npz").read_bytes())
    raw[1000] ^= 0xFF
    (tmp_path / "mnist.npz").write_bytes(bytes(raw))
    with pytest.raises(EmpirError, match="sha256 .* expected 06af5dfe"):
        data.load("mnist", data_dir=tmp_path)


def test_missing_data_offline_gives_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("EMPIR_DATA_DIR", str(tmp_path))

    def offline(name):
        raise OSError("Name or service not known")

    monkeypatch.setattr(data, "_keras_download", offline)
    with pytest.raises(EmpirError) as e:
        data.load("mnist")
    msg = str(e.value)
    assert str(tmp_path) in msg and "EMPIR_DATA_DIR" in msg and "mnist.npz" in msg and "download failed" in msg
    with pytest.raises(EmpirError, match="tiny-imagenet-200.tar.gz"):
        data.load("tiny-imagenet")


@pytest.mark.parametrize("kwargs,msg", [
    ({"name": "svhn"}, "unknown dataset 'svhn'"),
    ({"name": "mnist", "split": "validation"}, "unknown split"),
    ({"name": "mnist", "n": 0}, "n=0"),
])
def test_bad_arguments(kwargs, msg, monkeypatch):
    # Arguments are checked before any data is looked for: on a fresh offline machine
    # (EMPIR_DATA_DIR unset, no network) a bad n must still be named, not a missing dataset.
    monkeypatch.delenv("EMPIR_DATA_DIR", raising=False)

    def no_data(*args, **kwargs):
        raise AssertionError("data.load looked for data before checking its arguments")

    monkeypatch.setattr(data, "_raw", no_data)
    with pytest.raises(EmpirError, match=msg):
        data.load(**kwargs)


def test_sample_too_small():
    with pytest.raises(EmpirError, match="holds 500 images"):
        data.load_sample("mnist", n=501)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    def broken(path):
        open(path, "w").write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        files.atomic_write(tmp_path / "out.json", broken)
    assert list(tmp_path.iterdir()) == []


def _fake_imagenet(root, classes=("n01", "n02", "n03"), per_class=4, size=(40, 56)):
    """A miniature ImageNet in the standard layout: root/{train,val}/<wnid>/*.JPEG."""
    import tensorflow as tf
    rng = np.random.RandomState(0)
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                img = rng.randint(0, 256, (*size, 3)).astype(np.uint8)
                (root / split / c / f"{c}_{i}.JPEG").write_bytes(tf.io.encode_jpeg(img).numpy())
    return root


def test_imagenet_folder_layout_streams_labelled_batches(tmp_path):
    root = _fake_imagenet(tmp_path / "imagenet")
    files, labels, classes = imagenet.imagenet_files(root, "val")
    assert classes == ["n01", "n02", "n03"] and len(files) == 12
    assert labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4  # 0-based, sorted wnids (appendix section 8)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in imagenet.imagenet_dataset(root, "val", 32, batch_size=5)])
    assert [len(x) for x in xs] == [5, 5, 2]
    x = np.concatenate(xs)
    assert x.shape == (12, 32, 32, 3) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert np.concatenate(ys).tolist() == labels.tolist()


def test_imagenet_training_augmentation_is_seeded(tmp_path):
    root = _fake_imagenet(tmp_path / "imagenet")

    def first(seed):
        ds = imagenet.imagenet_dataset(root, "train", 32, batch_size=12, shuffle=True, seed=seed, augment=True)
        x, y = next(iter(ds))
        return x.numpy(), y.numpy()

    (a, ya), (b, yb), (c, _) = first(1), first(1), first(2)
    assert np.array_equal(a, b) and np.array_equal(ya, yb)
    assert not np.array_equal(a, c)
    plain = np.concatenate([x.numpy() for x, _ in imagenet.imagenet_dataset(root, "train", 32, batch_size=12)])
    assert not any(np.array_equal(a[0], p) for p in plain)  # a random crop, not the centre crop


def test_imagenet_layout_errors_name_the_fix(tmp_path):
    with pytest.raises(EmpirError, match="standard layout"):
        imagenet.imagenet_files(tmp_path, "train")
    (tmp_path / "train" / "n01").mkdir(parents=True)
    with pytest.raises(EmpirError, match="no .JPEG"):
        imagenet.imagenet_files(tmp_path, "train")
    os.environ.pop("EMPIR_IMAGENET_DIR", None)
    env = os.environ.pop("EMPIR_DATA_DIR", None)
    try:
        with pytest.raises(EmpirError, match="EMPIR_IMAGENET_DIR"):
            imagenet.imagenet_root()
    finally:
        if env is not None:
            os.environ["EMPIR_DATA_DIR"] = env
