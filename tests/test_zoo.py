"""The model zoo: required members, accuracy floors, integrity and safe loading."""
import json

import keras
import numpy as np
import pytest

from empir_lib.core import files, settings
from empir_lib.core.errors import EmpirError
from empir_lib.nets import data, zoo

MANIFEST = zoo.read_manifest()["members"]


def _need(mid):
    if mid not in MANIFEST:
        pytest.fail(f"{mid} is not in the zoo; train it with 'empir zoo build'")
    return MANIFEST[mid]


@pytest.mark.parametrize("dataset", sorted(settings.ZOO_MEMBERS))
def test_every_required_member_is_in_the_zoo(dataset):
    want = {zoo.find(dataset, w, a, s) for w, a, s, *_ in settings.ZOO_MEMBERS[dataset]}
    assert sorted(want - set(MANIFEST)) == []


def test_accuracy_floors():
    # The targets on the full test set (paper: 98.87 and 74.54).
    assert _need("mnist-fp-s1")["test_accuracy"] >= 0.988
    assert _need("cifar10-fp-s1")["test_accuracy"] >= 0.72


def test_manifest_records_provenance():
    for mid, e in MANIFEST.items():
        for key in ("command", "git_commit", "date", "epochs", "seed", "train_time_s", "hardware",
                    "test_accuracy", "n_test", "sha256"):
            assert key in e, f"{mid} lacks {key}"
        assert e["n_test"] == 10000, f"{mid}: accuracy not on the full test set"


def test_zoo_size_budget():
    # About 100 MB: the budget set when Table 2's defended members joined the zoo (beyond it,
    # members are to be stored compactly, as the Tiny ImageNet AlexNets are).
    total = sum((zoo.ZOO_DIR / e["file"]).stat().st_size for e in MANIFEST.values())
    assert total < 100e6


def test_zoo_files_match_their_hashes():
    assert zoo.verify() == []


def test_loaded_member_reproduces_its_accuracy_on_the_sample():
    m = zoo.load(_need("mnist-fp-s1") and "mnist-fp-s1")
    x, y = data.load_sample("mnist")
    assert np.mean(np.argmax(m(x), -1) == y) > 0.97


def _tiny_zoo(tmp_path, model):
    path = tmp_path / "m.keras"
    model.save(path)
    manifest = {"members": {"m": {"file": "m.keras", "sha256": files.sha256(path), "command": "test"}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return path


def test_truncated_or_tampered_weights_are_refused(tmp_path):
    from empir_lib.nets import models

    path = _tiny_zoo(tmp_path, models.cifar_conv(2, 2))
    assert zoo.load("m", tmp_path).count_params() == 116_704
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(EmpirError, match="truncated or tampered"):
        zoo.load("m", tmp_path)
    path.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(EmpirError, match="truncated or tampered"):
        zoo.load("m", tmp_path)
    path.unlink()
    with pytest.raises(EmpirError, match="missing"):
        zoo.load("m", tmp_path)


def test_loading_uses_keras_safe_mode(tmp_path):
    # A Lambda layer carries Python bytecode; safe mode must refuse it.
    inp = keras.Input((3,))
    _tiny_zoo(tmp_path, keras.Model(inp, keras.layers.Lambda(lambda t: t * 2)(inp)))
    with pytest.raises(EmpirError, match="could not be loaded"):
        zoo.load("m", tmp_path)


def test_unknown_member_lists_the_available_ones():
    with pytest.raises(EmpirError, match="unknown zoo member 'mnist-a9w9-s1'; available: "):
        zoo.load("mnist-a9w9-s1")


def test_tiny_imagenet_member_is_stored_as_float16_and_loads_back(tmp_path, data_dir):
    from empir_lib.nets import models
    keras.utils.set_random_seed(0)
    model = models.alexnet_tiny(width=0.125)
    path = tmp_path / "model.keras"
    model.save(path)
    cfg = {"dataset": "tiny-imagenet", "arch": "alexnet_tiny", "arch_kwargs": {"width": 0.125}, "wbits": 32,
           "abits": 32, "seed": 9, "epochs": 1, "batch_size": 128, "lr": 1e-3, "label_smoothing": 0.0,
           "n_train": 10}
    result = {"config": cfg, "model_path": str(path), "model": model, "train_time_s": 1.0, "history": []}
    (tmp_path / "zoo").mkdir()
    entry = zoo.add(result, zoo_dir=tmp_path / "zoo", command="test")
    assert entry["storage"] == "float16" and entry["file"] == "tiny-imagenet-fp-s9.f16.npz"
    assert 0 <= entry["test_accuracy_float32"] <= 1
    assert entry["size_bytes"] < 0.6 * path.stat().st_size  # half the bytes of the float32 .keras
    loaded = zoo.load("tiny-imagenet-fp-s9", zoo_dir=tmp_path / "zoo")
    for a, b in zip(model.weights, loaded.weights):
        assert np.array_equal(np.asarray(a.numpy(), np.float16).astype(np.float32), b.numpy())
    x, _ = data.load_sample("tiny-imagenet", 32)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-2 * float(np.abs(model(x)).max()))
    # The manifest's accuracy is the stored (rounded) model's, the one a reader loads.
    xt, yt = data.load("tiny-imagenet", "test", data_dir)
    assert entry["test_accuracy"] == pytest.approx(float(np.mean(np.argmax(loaded.predict(xt, 500, verbose=0), -1)
                                                                 == yt)))
    # Tampering is caught before loading.
    f = tmp_path / "zoo" / entry["file"]
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(EmpirError, match="sha256"):
        zoo.load("tiny-imagenet-fp-s9", zoo_dir=tmp_path / "zoo")
