"""The stochastic quantiser (the original code's stocRound), its layers and members, and EOT in the suite."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from empir_lib.attack import apgd, objectives, suite
from empir_lib.core.errors import FULL_PRECISION, EmpirError
from empir_lib.nets import data, ensemble, models, quantize, stochastic, zoo
from empir_lib.studies import results, worstcase


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_stochastic_rounding_is_unbiased(bits):
    # E[q(x)] = x: with N draws the mean is within 5 standard errors of x (p(false alarm) < 1e-6).
    xs = np.array([0.0, 0.1, 0.37, 0.5, 0.81, 1.0], np.float32)
    n = 20000
    q = quantize.quantize_k_stochastic(tf.constant(np.repeat(xs, n)), bits, seed=7).numpy().reshape(len(xs), n)
    step = 1 / (2**bits - 1)
    frac = xs / step - np.floor(xs / step)
    se = step * np.sqrt(frac * (1 - frac) / n) + 1e-9
    assert np.all(np.abs(q.mean(1) - xs) <= 5 * se + 1e-6)
    # Every value is one of the two neighbouring levels, never off the grid.
    lo, hi = np.floor(xs / step) * step, np.minimum(np.ceil(xs / step) * step, 1)
    assert np.all(np.isclose(q, lo[:, None], atol=1e-6) | np.isclose(q, hi[:, None], atol=1e-6))


def test_the_concrete_relaxation_draws_the_same_distribution_and_passes_a_gradient():
    x = tf.constant(np.full(40000, 0.3, np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        q = quantize.quantize_k_stochastic(x, 2, seed=3, relaxation="concrete", temperature=0.5)
    g = tape.gradient(q, x).numpy()
    assert abs(q.numpy().mean() - 0.3) < 5 * np.sqrt(0.9 * 0.1 / 40000) / 3 + 1e-6
    assert np.all(np.isfinite(g)) and g.mean() > 0
    # The straight-through estimator on the expectation: gradient exactly 1.
    with tf.GradientTape() as tape:
        tape.watch(x)
        q = quantize.quantize_k_stochastic(x, 2, seed=3)
    np.testing.assert_array_equal(tape.gradient(q, x).numpy(), 1.0)


@pytest.mark.parametrize("bits", [0, 17, 32, -1, 2.5, True, "4"])
def test_stochastic_quantiser_refuses_bits_outside_1_to_16(bits):
    with pytest.raises(EmpirError, match="1..16"):
        quantize.quantize_k_stochastic(tf.constant([0.5]), bits)


def test_bad_rounding_options_are_refused():
    with pytest.raises(EmpirError, match="relaxation"):
        quantize.check_rounding({"relaxation": "gumbel"}, 2)
    with pytest.raises(EmpirError, match="unknown rounding option"):
        quantize.check_rounding({"tau": 1.0}, 2)
    with pytest.raises(EmpirError, match="1..16"):
        quantize.QuantDense(4, abits=32, rounding="stochastic")
    assert quantize.check_rounding("nearest", 2) is None


def test_layers_default_to_eq5_and_their_config_is_unchanged():
    layer = quantize.QuantConv2D(4, 3, wbits=2, abits=2)
    assert layer.rounding is None and "rounding" not in layer.get_config()
    s = quantize.QuantConv2D(4, 3, wbits=2, abits=2, rounding={"mode": "stochastic", "seed": 5})
    cfg = s.get_config()
    again = quantize.QuantConv2D.from_config(cfg)
    assert again.rounding == s.rounding and again.rounding["inference"] == "sample"


def test_a_stochastic_member_round_trips_and_names_its_evaluation(tmp_path):
    m = models.build("mnist_conv", 2, 2)
    s = stochastic.to_stochastic(m, seed=1)
    assert stochastic.is_stochastic(s) and not stochastic.is_stochastic(m)
    x = np.random.RandomState(0).rand(6, 28, 28, 1).astype(np.float32)
    a, b = s(x, training=False).numpy(), s(x, training=False).numpy()
    assert not np.array_equal(a, b)  # 'sample': a fresh draw on every pass
    det = stochastic.with_inference(s, "nearest")
    np.testing.assert_array_equal(det(x, training=False).numpy(), m(x, training=False).numpy())
    stochastic.reseed(s, 4)
    a = s(x).numpy()
    stochastic.reseed(s, 4)
    np.testing.assert_array_equal(a, s(x).numpy())
    s.save(tmp_path / "s.keras")
    back = keras.saving.load_model(tmp_path / "s.keras", compile=False, safe_mode=True)
    assert [getattr(layer, "rounding", None) for layer in back.layers] == [getattr(layer, "rounding", None)
                                                                           for layer in s.layers]
    with pytest.raises(EmpirError, match="nothing to round"):
        stochastic.to_stochastic(models.build("mnist_conv"))
    with pytest.raises(EmpirError, match="inference"):
        stochastic.with_inference(s, "mean")


def test_committed_zoo_members_still_load_and_predict_as_before():
    m = zoo.load("mnist-a4w2-s1")
    assert all(getattr(layer, "rounding", "absent") is None for layer in m.layers if hasattr(layer, "abits"))
    x = np.random.RandomState(1).rand(8, 28, 28, 1).astype(np.float32)
    np.testing.assert_array_equal(m(x).numpy(), m(x).numpy())


def test_disagreement_is_zero_for_a_deterministic_ensemble_and_not_for_a_stochastic_one():
    m = models.build("mnist_conv", 2, 1)
    x = np.random.RandomState(2).rand(64, 28, 28, 1).astype(np.float32)
    det = stochastic.disagreement(ensemble.make([m]), x, draws=3)
    assert det["share"] == 0.0
    s = stochastic.to_stochastic(m, seed=2)
    out = stochastic.disagreement(ensemble.make([s]), x, draws=5)
    assert out["per_image"].shape == (64,) and out["majority"].shape == (64,)
    with pytest.raises(EmpirError):
        stochastic.disagreement(ensemble.make([s]), x, draws=1)


def test_majority_breaks_ties_to_the_smaller_class():
    preds = np.array([[1, 2, 0], [1, 3, 0], [2, 3, 1]])
    assert stochastic.majority(preds).tolist() == [1, 3, 0]
    assert stochastic.majority_tf(tf.constant(preds), 4).numpy().tolist() == [1, 3, 0]


# --- EOT in the worst-case suite ------------------------------------------------------------------------

LIGHT = {"n_iter": 10, "restarts": 1}


@pytest.fixture(scope="module")
def mnist_empir():
    x, y = data.load_sample("mnist")
    return ensemble.empir("mnist"), x, y


def test_the_default_suite_is_unchanged_by_eot(mnist_empir):
    ens, x, y = mnist_empir
    th = {"norm": "linf", "eps": 0.1}
    specs = suite.attack_suite(ens, th)
    assert not any("eot_samples" in s or "decision" in s for s in specs)
    assert suite.attack_suite(ens, th, 1, "majority") == specs
    # The broken_by of this light cascade, recorded with the code before EOT existed (same seed).
    light = [{**s, **LIGHT} for s in specs if s["kind"] in ("apgd", "pgd")]
    res = suite.cascade(ens, x[:20], y[:20], th, light, progress=False)
    assert res["broken_by"].tolist() == [-1, -1, 2, -1, 1, 2, 1, 1, 1, 7, -1, -1, 2, -1, 2, 1, 7, -1, 1, -1]
    assert "randomness" not in res


def test_the_default_suite_only_grew_from_the_committed_one():
    """The committed suite rows predate APGD-T and Square's 5,000 queries (issue 30): the default suite keeps every
    stage they ran with the same settings but Square's budget, and adds APGD-T. Nothing else differs, so
    `empir reproduce` reruns them as a stronger suite, and suite_checks' `stages` jobs continue them."""
    path = results.RESULTS_DIR / "mnist" / "suite" / "empir-linf-table1.json"
    if not path.is_file():
        pytest.skip("no committed suite result")
    record = results.read_result(path)
    job = next(j for j in worstcase.jobs("mnist", 10000, 1000) if j["name"] == "suite/empir-linf-table1")
    cfg = worstcase.config(job, "mnist", ensemble.empir("mnist"), record["n"])
    old, new = ({a["name"]: a for a in attacks} for attacks in (record["attacks"], cfg["attacks"]))
    assert set(old) <= set(new) and set(new) - set(old) == {"apgd-t"}
    assert {k for k in old if old[k] != new[k]} == {"square"}
    assert (old["square"]["queries"], new["square"]["queries"]) == (1000, 5000)
    assert {k for k in cfg if cfg[k] != record.get(k)} == {"attacks"}  # the members, threat and n are the same
    assert results.done(path, cfg) is None


def test_eot_with_one_sample_is_the_plain_loss_and_bad_settings_are_refused(mnist_empir):
    ens, x, y = mnist_empir
    a = apgd.run(objectives.loss_fn(ens, "ce_mean_prob"), x[:12], y[:12], 0.15, n_iter=8, seed=3)
    b = apgd.run(objectives.loss_fn(ens, "ce_mean_prob", eot_samples=1), x[:12], y[:12], 0.15, n_iter=8, seed=3)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(EmpirError, match="eot_samples"):
            objectives.loss_fn(ens, "ce_mean_prob", eot_samples=bad)
    with pytest.raises(EmpirError, match="EOT decision"):
        suite.attack_suite(ens, {"norm": "linf", "eps": 0.1}, 4, "mean")
    mixed = suite.attack_suite(ens, {"norm": "linf", "eps": 0.1}, 4)[:2]
    mixed[1] = {k: v for k, v in mixed[1].items() if k not in ("eot_samples", "decision")}
    with pytest.raises(EmpirError, match="one EOT setting"):
        suite.check_suite(mixed)


def _grad(fn, x, y):
    _, pred, g = apgd.loss_decision_gradient(fn, tf.constant(x), tf.constant(y))
    return pred.numpy(), g.numpy()


def test_eot_averages_the_gradient(mnist_empir):
    _, x, y = mnist_empir
    x, y = x[:2], y[:2].astype(np.int32)
    det = ensemble.make([zoo.load("mnist-a4w2-s1"), zoo.load("mnist-fp-s1")])
    # Deterministic members: the mean of S identical passes is one pass (a mean, not a sum).
    p1, g1 = _grad(objectives.loss_fn(det, "ce_sum"), x, y)
    p4, g4 = _grad(objectives.loss_fn(det, "ce_sum", 4, "majority"), x, y)
    np.testing.assert_allclose(g4, g1, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(p4, p1)
    # Stochastic members: the spread of the gradient estimate shrinks as S grows.
    sto = ensemble.make([stochastic.to_stochastic(zoo.load("mnist-a4w2-s1"), seed=1)])
    spread = {}
    for s in (1, 16):
        fn = objectives.loss_fn(sto, "ce_sum", s)
        gs = np.stack([_grad(fn, x, y)[1] for _ in range(6)])
        spread[s] = gs.std(0).mean()
    assert spread[16] < spread[1]


def test_a_cascade_with_eot_judges_breaks_on_the_named_decision(mnist_empir):
    _, x, y = mnist_empir
    members = [stochastic.to_stochastic(zoo.load("mnist-a4w2-s1"), seed=1), zoo.load("mnist-fp-s1")]
    ens = ensemble.make(members, names=["sto", "fp"])
    assert ens.fp == (False, True) and members[1].layers[1].abits == FULL_PRECISION
    th = {"norm": "linf", "eps": 0.2}
    specs = [{**s, **LIGHT} for s in suite.attack_suite(ens, th, 3, "majority")[:2]]
    res = suite.cascade(ens, x[:10], y[:10], th, specs, progress=False)
    assert 0.0 <= res["randomness"] <= 1.0 and res["config"]["attacks"][0]["eot_samples"] == 3
    assert res["broken_by"].shape == (10,)
