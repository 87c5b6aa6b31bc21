"""Attacks: the eps ball and the clip range, agreement with cleverhans, strength floors, bad input."""
import numpy as np
import pytest
import tensorflow as tf

from empir_lib.attack import attacks
from empir_lib.core.errors import EmpirError
from empir_lib.nets import data, ensemble
from empir_lib.studies import evaluate


@pytest.fixture(scope="module")
def mnist():
    x, y = data.load_sample("mnist", 200)
    return x, y


@pytest.fixture(scope="module")
def base():
    return ensemble.baseline("mnist")


@pytest.fixture(scope="module")
def empir():
    return ensemble.empir("mnist")


@pytest.mark.parametrize("attack", attacks.ATTACKS)
@pytest.mark.parametrize("protocol", attacks.PROTOCOLS)
def test_every_attack_stays_in_its_eps_ball_and_the_clip_range(empir, mnist, attack, protocol):
    x, y = mnist[0][:40], mnist[1][:40]
    # Fewer iterations keep the test short; the bounds do not depend on them.
    fewer = {"bim": {"nb_iter": 5}, "pgd": {"nb_iter": 5}, "cw": {"max_iterations": 10}}.get(attack, {})
    params = attacks.preset("mnist", attack, **fewer)
    xa = attacks.generate(empir, attack, x, y, protocol, params=params)
    assert xa.shape == x.shape and np.isfinite(xa).all()
    assert xa.min() >= 0.0 and xa.max() <= 1.0
    if attack != "cw":
        assert np.abs(xa - x).max() <= params["eps"] + 1e-6
    assert np.abs(xa - x).max() > 0, "the attack changed nothing"


def test_pgd_equals_cleverhans_pgd_given_the_same_random_start(base, mnist, monkeypatch):
    from cleverhans.tf2.attacks import projected_gradient_descent as ch_pgd

    x, _ = mnist[0][:64], mnist[1][:64]
    p = attacks.preset("mnist", "pgd", nb_iter=10)
    seed = 7
    labels = ensemble.predict(base, x).astype(np.int32)
    ours = attacks.compile_attack(base, "pgd", "member:0", p, clip_start=True)(x, labels, seed)
    # The same start our PGD draws for this seed, handed to cleverhans instead of its own draw.
    eta = tf.random.stateless_uniform(x.shape, tf.constant([seed, 0x5EED], tf.int64), -p["eps"], p["eps"])
    monkeypatch.setattr(ch_pgd, "random_lp_vector", lambda *a, **k: eta)
    theirs = ch_pgd.projected_gradient_descent(
        base.members[0], tf.constant(x), p["eps"], p["eps_iter"], p["nb_iter"], np.inf, clip_min=0.0,
        clip_max=1.0, y=tf.constant(labels, tf.int64), rand_init=True, sanity_checks=False).numpy()
    # Identical up to float rounding in the last step of a handful of pixels.
    assert np.mean(np.abs(ours - theirs) > 1e-5) < 1e-3
    np.testing.assert_allclose(ours, theirs, atol=p["eps_iter"] + 1e-6)


def test_fgsm_equals_cleverhans_fgsm(base, mnist):
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method

    x = mnist[0][:64]
    labels = ensemble.predict(base, x).astype(np.int32)
    ours = attacks.compile_attack(base, "fgsm", "member:0", {"eps": 0.3})(x, labels)
    theirs = fast_gradient_method(base.members[0], tf.constant(x), 0.3, np.inf, clip_min=0.0, clip_max=1.0,
                                  y=tf.constant(labels, tf.int64)).numpy()
    assert np.mean(np.abs(ours - theirs) > 1e-5) < 1e-3


def test_fgsm_at_03_breaks_the_undefended_mnist_model(base, mnist):
    x, y = mnist
    xa = attacks.generate(base, "fgsm", x, y, dataset="mnist")
    assert np.mean(ensemble.predict(base, xa) == y) < 0.20


def test_cw_succeeds_on_the_undefended_mnist_model(base, mnist):
    x, y = mnist[0][:100], mnist[1][:100]
    clean = ensemble.predict(base, x)
    # The paper's preset: 1 binary-search step, c = 10, 50 iterations (Table 1).
    xa = attacks.generate(base, "cw", x, y, dataset="mnist")
    paper_rate = np.mean(ensemble.predict(base, xa) != clean)
    assert paper_rate >= 0.9
    # With a real binary search and more iterations it succeeds on (nearly) every image.
    strong = attacks.preset("mnist", "cw", binary_search_steps=4, max_iterations=100)
    xa = attacks.generate(base, "cw", x, y, params=strong)
    assert np.mean(ensemble.predict(base, xa) != clean) >= 0.99
    assert np.sqrt(((xa - x) ** 2).sum((1, 2, 3))).mean() < 3.0, "CW should find small L2 perturbations"


def test_paper_protocol_objectives_are_the_original_wiring(empir, base):
    assert attacks.paper_objective(empir, "fgsm") == "original_attack_prob_as_logits"
    assert attacks.paper_objective(empir, "pgd") == "original_attack_prob_as_logits"
    assert attacks.paper_objective(empir, "bim") == "original_fp_member"
    assert attacks.paper_objective(empir, "cw") == "original_fp_member"
    assert attacks.paper_objective(base, "cw") == "member:0"


def test_objective_scores(empir, mnist):
    x = tf.constant(mnist[0][:8])
    z = ensemble.member_logits(empir, x).numpy()
    p = tf.nn.softmax(z).numpy()
    mean_prob = attacks.score_function(empir, "mean_prob")(x).numpy()
    np.testing.assert_allclose(np.exp(mean_prob), p.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(attacks.score_function(empir, "mean_logits")(x).numpy(), z.mean(0), rtol=1e-5)
    fp_scores = attacks.score_function(empir, "original_fp_member")(x).numpy()
    np.testing.assert_allclose(fp_scores, z[2], rtol=1e-5)
    t = attacks.score_function(empir, "temperature")(x).numpy()
    np.testing.assert_allclose(np.exp(t).sum(-1), 1.0, rtol=1e-4)


@pytest.mark.parametrize("call,msg", [
    (lambda e, x, y: attacks.preset("mnist", "fgsm", eps=-0.1), "eps=-0.1 is negative"),
    (lambda e, x, y: attacks.preset("mnist", "pgd", eps=1.5), r"eps=1.5 must lie in \[0.0, 1.0\]"),
    (lambda e, x, y: attacks.preset("mnist", "pgd", eps=float("nan")), "eps=nan must be a finite"),
    (lambda e, x, y: attacks.preset("mnist", "pgd", nb_iter=0), "nb_iter=0"),
    (lambda e, x, y: attacks.preset("mnist", "fgsm", steps=3), "unknown fgsm parameter"),
    (lambda e, x, y: attacks.preset("svhn", "fgsm"), "unknown dataset 'svhn'"),
    (lambda e, x, y: attacks.generate(e, "deepfool", x, y, dataset="mnist"), "unknown attack 'deepfool'"),
    (lambda e, x, y: attacks.generate(e, "fgsm", x, y, protocol="robust", dataset="mnist"),
     "unknown protocol 'robust'"),
    (lambda e, x, y: attacks.generate(e, "fgsm", x, y, objective="member:7", dataset="mnist"), "names no member"),
    (lambda e, x, y: attacks.generate(e, "fgsm", x, y, objective="median", dataset="mnist"),
     "unknown objective 'median'"),
    (lambda e, x, y: attacks.generate(e, "fgsm", np.full_like(x, np.nan), y, dataset="mnist"), "NaN"),
    (lambda e, x, y: attacks.generate(e, "fgsm", x * 255, y, dataset="mnist"), r"pixels must lie in \[0, 1\]"),
    (lambda e, x, y: attacks.generate(e, "fgsm", x[..., 0], y, dataset="mnist"), "expects"),
    (lambda e, x, y: attacks.generate(e, "fgsm", x, None, protocol="adaptive", dataset="mnist"), "pass y"),
    (lambda e, x, y: attacks.generate(e, "fgsm", x, y + 20, protocol="adaptive", dataset="mnist"),
     "labels must lie in 0..9"),
    (lambda e, x, y: attacks.generate(e, "fgsm", x, y), "pass params"),
])
def test_bad_input_is_refused(empir, mnist, call, msg):
    x, y = mnist[0][:4], mnist[1][:4]
    with pytest.raises(EmpirError, match=msg):
        call(empir, x, y)


def test_fp_member_objective_needs_an_fp_member(mnist):
    lp_only = ensemble.from_zoo(["mnist-a4w2-s1", "mnist-a4w2-s2"])
    with pytest.raises(EmpirError, match="needs a full-precision member"):
        attacks.generate(lp_only, "bim", mnist[0][:4], mnist[1][:4], dataset="mnist")


def test_evaluate_refuses_bad_input_and_writes_nothing(empir, mnist, tmp_path):
    x, y = mnist[0][:4], mnist[1][:4]
    partial = tmp_path / "p.npz"
    with pytest.raises(EmpirError, match="eps=-1"):
        evaluate.adversarial_accuracy(empir, "fgsm", x, y, params={"eps": -1}, partial_path=partial)
    with pytest.raises(EmpirError, match="4 images but 3 labels"):
        evaluate.adversarial_accuracy(empir, "fgsm", x, y[:3], dataset="mnist", partial_path=partial)
    assert list(tmp_path.iterdir()) == []


def test_loss_and_gradient_is_what_fgsm_steps_along(empir, mnist):
    x = mnist[0][:16]
    labels = ensemble.predict(empir, x)
    loss, grad = attacks.loss_and_gradient(empir, "mean_prob", x, labels)
    assert loss.shape == (16,) and grad.shape == x.shape and np.all(loss >= 0)
    xa = attacks.compile_attack(empir, "fgsm", "mean_prob", {"eps": 0.1})(x, labels.astype(np.int32))
    # Equal but for pixels whose gradient is ~0, where eager and traced float rounding can flip the sign.
    assert np.mean(np.abs(xa - np.clip(x + 0.1 * np.sign(grad), 0, 1)) > 1e-6) < 2e-3


_SHARDED = r"""
import sys, numpy as np, tensorflow as tf
cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
from empir_lib.attack import attacks
from empir_lib.nets import data, ensemble
from empir_lib.core import distribute
assert distribute.strategy().num_replicas_in_sync == 2
ens = ensemble.empir("mnist")
x, y = data.load_sample("mnist", 51)  # odd: the two shards differ in size
out = {a: attacks.generate(ens, a, x, y, "adaptive", params=attacks.preset("mnist", a, **kw), seed=4)
       for a, kw in (("fgsm", {}), ("pgd", {"nb_iter": 5}))}
out["pred"] = ensemble.predict(ens, x)
np.savez(sys.argv[1], **out)
"""


def test_attacks_split_over_two_replicas_equal_one_device(tmp_path):
    """tf.distribute: FGSM, PGD and the vote over two (logical CPU) replicas give the one-device results."""
    import os
    import subprocess
    import sys
    env = {**os.environ, "EMPIR_STRATEGY": "mirrored", "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", _SHARDED, str(tmp_path / "two.npz")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    ens = ensemble.empir("mnist")
    x, y = data.load_sample("mnist", 51)
    with np.load(tmp_path / "two.npz") as two:
        for a, kw in (("fgsm", {}), ("pgd", {"nb_iter": 5})):
            one = attacks.generate(ens, a, x, y, "adaptive", params=attacks.preset("mnist", a, **kw), seed=4)
            assert two[a].shape == one.shape
            np.testing.assert_allclose(two[a], one, atol=1e-6)
        assert np.array_equal(two["pred"], ensemble.predict(ens, x))  # the vote, split over replicas too
