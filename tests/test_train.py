"""Training: determinism, label smoothing, refusal to mix runs, resume after a real kill."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from empir_lib.core import settings
from empir_lib.core.errors import EmpirError
from empir_lib.nets import train


def _weights(run_dir):
    with np.load(run_dir / "checkpoint.npz", allow_pickle=False) as f:
        return [f[k] for k in sorted(f.files) if k.startswith("w")]


def test_same_seed_same_weights_other_seed_differs(tmp_path, data_dir):
    kw = dict(dataset="mnist", wbits=2, abits=4, epochs=1, n_train=1024, progress=False)
    train.train_member(seed=3, run_dir=tmp_path / "a", **kw)
    train.train_member(seed=3, run_dir=tmp_path / "b", **kw)
    train.train_member(seed=4, run_dir=tmp_path / "c", **kw)
    a, b, c = (_weights(tmp_path / d) for d in "abc")
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))


def test_original_label_smoothing_clips_one_hot():
    t = train.smoothed_targets(tf.constant([2]), 10, 0.1).numpy()[0]
    np.testing.assert_allclose(t[2], 0.9)
    np.testing.assert_allclose(np.delete(t, 2), 0.1 / 9)
    np.testing.assert_allclose(t.sum(), 1.0, rtol=1e-6)


def test_refuses_to_mix_two_configurations(tmp_path, data_dir):
    kw = dict(dataset="mnist", epochs=1, n_train=256, progress=False, run_dir=tmp_path)
    train.train_member(wbits=2, abits=4, **kw)
    with pytest.raises(EmpirError, match="different configuration"):
        train.train_member(wbits=4, abits=4, **kw)


@pytest.mark.parametrize("kwargs,msg", [
    ({"wbits": 0}, "wbits=0"), ({"abits": 33}, "abits=33"), ({"wbits": "two"}, "wbits='two'"),
    ({"dataset": "svhn"}, "unknown dataset"), ({"epochs": 0}, "epochs=0"), ({"lr": float("nan")}, "lr="),
])
def test_bad_arguments_write_nothing(tmp_path, kwargs, msg):
    args = {"dataset": "mnist", "run_dir": tmp_path / "run", **kwargs}
    with pytest.raises(EmpirError, match=msg):
        train.train_member(**args)
    assert not (tmp_path / "run").exists()


def _cli(run_dir, epochs=3):
    return [sys.executable, "-m", "empir_lib.cli", "train", "--dataset", "mnist", "--wbits", "2", "--abits", "4",
            "--seed", "5", "--epochs", str(epochs), "--n-train", "6144", "--run-dir", str(run_dir)]


def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path, data_dir):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run(_cli(tmp_path / "whole"), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "checkpoint.npz").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # into the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "model.keras").exists(), "the run finished before the kill; the test proves nothing"
    subprocess.run(_cli(killed), check=True, env=env, capture_output=True)

    for u, v in zip(_weights(tmp_path / "whole"), _weights(killed)):
        np.testing.assert_array_equal(u, v)


def test_augment_batch_crops_and_flips_deterministically():
    rng = np.random.RandomState(0)
    x = rng.rand(64, 8, 8, 3).astype(np.float32)
    a = train.augment_batch(x, np.random.RandomState([5, 0, 1]))
    b = train.augment_batch(x, np.random.RandomState([5, 0, 1]))
    assert a.shape == x.shape and a.dtype == x.dtype and np.array_equal(a, b)
    pad = train.AUGMENT_PAD
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    flipped = 0
    for i in range(len(x)):
        # Every output is one of the (2 pad + 1)^2 crops of its own padded image, maybe mirrored.
        crops = [padded[i, dy:dy + 8, dx:dx + 8] for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]
        plain = any(np.array_equal(a[i], c) for c in crops)
        mirrored = any(np.array_equal(a[i], c[:, ::-1]) for c in crops)
        assert plain or mirrored
        flipped += mirrored and not plain
    assert 10 < flipped < 54  # about half are mirrored
    assert not np.array_equal(a, x)


def test_recipe_augmentation_and_cosine_schedule_are_recorded_and_used(tmp_path, data_dir, monkeypatch):
    recipe = {**settings.RECIPES["mnist"], "augment": "crop-flip", "lr_schedule": "cosine"}
    monkeypatch.setitem(settings.RECIPES, "mnist", recipe)
    r = train.train_member("mnist", epochs=1, n_train=256, progress=False, run_dir=tmp_path / "aug")
    assert r["config"]["augment"] == "crop-flip" and r["config"]["lr_schedule"] == "cosine"
    monkeypatch.setitem(settings.RECIPES, "mnist", {k: v for k, v in recipe.items() if k != "augment"})
    train.train_member("mnist", epochs=1, n_train=256, progress=False, run_dir=tmp_path / "plain")
    # The same seed without augmentation ends elsewhere: the crops and flips reached the model.
    assert not all(np.array_equal(u, v) for u, v in zip(_weights(tmp_path / "aug"), _weights(tmp_path / "plain")))


_TWO_REPLICAS = r"""
import sys, numpy as np, tensorflow as tf
cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
from empir_lib.nets import train
r = train.train_member("mnist", 2, 4, seed=3, epochs=1, n_train=300, batch_size=100, progress=False,
                       run_dir=sys.argv[1])
print("REPLICAS", r["distribute"]["replicas"])
print("HISTORY", r["history"][0]["loss"], r["history"][0]["train_accuracy"])
"""


def test_two_replica_mirrored_training_matches_one_device(tmp_path, data_dir):
    """tf.distribute: the batch split over two (logical CPU) replicas gives the one-device weights."""
    env = {**os.environ, "EMPIR_STRATEGY": "mirrored", "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", _TWO_REPLICAS, str(tmp_path / "two")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "REPLICAS 2" in out.stdout
    one = train.train_member("mnist", 2, 4, seed=3, epochs=1, n_train=300, batch_size=100, progress=False,
                             run_dir=tmp_path / "one")
    assert one["distribute"]["replicas"] == 1
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    # MNISTconv has no batch norm, so the summed per-replica gradients equal the whole batch's.
    assert all(np.allclose(u, v, atol=1e-4) for u, v in zip(a, b))
    assert not all(np.array_equal(u, w) for u, w in zip(a, _initial_weights(3)))
    # Loss and accuracy count every image once (not once per replica).
    loss, acc = map(float, out.stdout.split("HISTORY")[1].split())
    assert loss == pytest.approx(one["history"][0]["loss"], rel=1e-4)
    assert acc == pytest.approx(one["history"][0]["train_accuracy"], abs=1e-9)


def _initial_weights(seed):
    import keras

    from empir_lib.nets import models
    keras.utils.set_random_seed(seed)
    return [w.numpy() for w in models.build("mnist_conv", 2, 4).weights]


def test_imagenet_trains_from_the_folder_layout(tmp_path):
    """The full-ImageNet path: streamed from <root>/train/<wnid>/*.JPEG, 224 pixels, resumable config."""
    from test_data import _fake_imagenet
    root = _fake_imagenet(tmp_path / "imagenet", per_class=2, size=(240, 260))
    r = train.train_member("imagenet", 2, 2, seed=1, epochs=1, batch_size=3, data_dir=root, progress=False,
                           run_dir=tmp_path / "run", arch_kwargs={"width": 0.0625})
    assert r["config"]["augment"] == "crop-flip" and len(r["history"]) == 1
    assert r["model"].input_shape == (None, 224, 224, 3) and r["model"].output_shape == (None, 1000)
    assert np.isfinite(r["history"][0]["loss"])
    assert (tmp_path / "run" / "model.keras").is_file()
