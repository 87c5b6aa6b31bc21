"""Attack-strength sweeps over precision: eps lists, the flip mechanism, accuracy curves, jobs and resuming."""
import numpy as np
import pytest
import tensorflow as tf

from empir_lib.attack import attacks
from empir_lib.core import settings
from empir_lib.core.errors import EmpirError
from empir_lib.nets import data, models, zoo
from empir_lib.studies import results, sweeps


@pytest.mark.parametrize("bad", [[-0.1, 0.2], [0.2, 0.1], [0.1, 0.1], [], [0.0, float("nan")], [0.5, 2.0],
                                 "0.1", None, [True, 0.3]])
def test_a_bad_eps_list_gives_one_clear_error(bad):
    with pytest.raises(EmpirError, match="eps list"):
        sweeps.check_eps_list(bad)


def test_eps_grid_runs_from_zero_to_table1():
    for ds in ("mnist", "cifar10"):
        grid = sweeps.eps_grid(ds)
        assert len(grid) >= 8 and grid[0] == 0 and grid[-1] == settings.get(ds).attacks["fgsm"]["eps"]
        assert sweeps.check_eps_list(grid) == grid
    # At Table 1's eps, PGD is Table 1's PGD exactly; at a smaller eps, the same attack scaled.
    assert sweeps.attack_params("mnist", "pgd", 0.3) == attacks.preset("mnist", "pgd")
    assert sweeps.attack_params("mnist", "pgd", 0.15)["eps_iter"] == pytest.approx(0.005)


def test_the_swept_members_are_the_fp_member_and_the_grid():
    ids = sweeps.members("cifar10")
    assert ids[0] == "cifar10-fp-s1" and len(ids) == 1 + len(settings.GRID)
    assert set(ids) <= set(zoo.members("cifar10"))
    names = [j["name"] for j in sweeps.jobs("mnist", 100, 10)]
    assert len(names) == len(set(names)) and all(n.startswith("sweeps/") for n in names)
    assert "sweeps/transfer-pgd" in names and "sweeps/flips-mnist-a2w2-s1" in names
    with pytest.raises(EmpirError):
        sweeps.members("tiny-imagenet")


def _on_levels(bits, shape, seed=0):
    # Images whose every pixel sits on an interior k-bit level (so +-eps is never clipped).
    n = 2**bits - 1
    k = np.random.RandomState(seed).randint(1, n, size=shape) if n > 1 else np.full(shape, 0)
    return (k / n).astype(np.float32)


@pytest.mark.parametrize("direction", ["random", "fgsm"])
def test_flips_nothing_below_half_a_bin_and_everything_above_a_bin(direction):
    model = models.build("mnist_conv", 2, 2)
    bins = 1 / 3
    x = _on_levels(2, (4, 28, 28, 1))
    y = np.arange(4) % 10
    out = sweeps.flip_fractions(model, x, y, [0.0, 0.49 * bins, 1.01 * bins], direction, pixel_bits=(2,))
    moved = 1.0
    if direction == "fgsm":  # a pixel whose gradient is exactly zero does not move
        g = attacks.ce_grad(lambda v: model(v, training=False), tf.constant(x), tf.constant(y.astype(np.int32)))
        moved = round(float(np.mean(g.numpy() != 0)), 6)
    assert out["pixels"]["2"] == [0.0, 0.0, moved]
    # conv1 quantises the image itself at abits = 2: the same fractions.
    assert out["layers"]["conv1"] == {"abits": 2, "fraction": [0.0, 0.0, moved]}
    assert set(out["layers"]) == {"conv1", "conv2", "conv3"}


def test_flips_of_a_full_precision_model_count_pixels_only():
    model = models.build("mnist_conv")
    x = _on_levels(1, (2, 28, 28, 1)) * 0 + 0.5
    out = sweeps.flip_fractions(model, x, [0, 1], [0.0, 0.1], "random", pixel_bits=(1, 4))
    assert out["layers"] == {} and out["pixels"]["4"][0] == 0.0
    with pytest.raises(EmpirError, match="direction"):
        sweeps.flip_fractions(model, x, [0, 1], [0.1], "gaussian")
    with pytest.raises(EmpirError, match="eps list"):
        sweeps.flip_fractions(model, x, [0, 1], [0.2, 0.1])


@pytest.fixture(scope="module")
def mnist_small():
    x, y = data.load_sample("mnist")
    return x[:24], y[:24]


def test_accuracy_at_eps_zero_is_clean_and_transfer_reads_the_fp_images(mnist_small):
    x, y = mnist_small
    m, fp = zoo.load("mnist-a2w2-s1"), zoo.load("mnist-fp-s1")
    c = sweeps.correct_against_eps(fp, [m, fp], x, y, "fgsm", [0.0, 0.3], "mnist")
    assert c.shape == (2, 2, 24)
    np.testing.assert_array_equal(c[0, 0], np.argmax(m(x).numpy(), -1) == y)
    white = sweeps.correct_against_eps(fp, [fp], x, y, "fgsm", [0.0, 0.3], "mnist")
    np.testing.assert_array_equal(white[0], c[1])  # the FP member's transfer row is its white-box row
    assert c[1, 1].mean() < c[1, 0].mean()


def test_a_job_writes_provenance_resumes_and_is_kept(mnist_small, tmp_path):
    x, y = mnist_small
    job = {"name": "sweeps/whitebox-mnist-a2w2-s1-fgsm", "kind": "whitebox", "source": "mnist-a2w2-s1",
           "targets": ["mnist-a2w2-s1"], "attack": "fgsm", "eps": [0.0, 0.1, 0.3], "n": 24}
    cfg = sweeps.config(job, "mnist", 24)
    # A partial file with the first eps done, as an interrupted run leaves it.
    part = tmp_path / "runs" / "mnist-sweeps-whitebox-mnist-a2w2-s1-fgsm.npz"
    first = sweeps.correct_against_eps(zoo.load("mnist-a2w2-s1"), [zoo.load("mnist-a2w2-s1")], x, y, "fgsm",
                                       [0.0], "mnist")
    sweeps._save_partial(part, cfg, [first[:, 0]], 1.0)
    rec, ran = sweeps.run_job(job, "mnist", x, y, tmp_path / "out", tmp_path / "runs", progress=False)
    assert ran and not part.exists()
    assert rec["provenance"]["git_commit"] and rec["n"] == 24 and len(rec["accuracy"]["mnist-a2w2-s1"]) == 3
    path = tmp_path / "out" / "sweeps" / "whitebox-mnist-a2w2-s1-fgsm.json"
    correct = sweeps.load_correct(path)
    assert correct.shape == (1, 3, 24)
    assert rec["accuracy"]["mnist-a2w2-s1"][0] == pytest.approx(first.mean())
    again, ran = sweeps.run_job(job, "mnist", x, y, tmp_path / "out", tmp_path / "runs", progress=False)
    assert not ran and again == results.read_result(path)
    flips = {**job, "name": "sweeps/flips-mnist-a2w2-s1", "kind": "flips"}
    rec, _ = sweeps.run_job(flips, "mnist", x, y, tmp_path / "out", tmp_path / "runs", progress=False)
    assert set(rec["fgsm"]["layers"]) == {"conv1", "conv2", "conv3"} and rec["random"]["pixels"]["1"][0] == 0
