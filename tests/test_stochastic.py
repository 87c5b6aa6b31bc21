"""The stochastic quantiser (the original code's stocRound): unbiased, on the grid, its layers and members."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from empir_lib import ensemble, models, quantize, stochastic, zoo
from empir_lib.errors import EmpirError


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
