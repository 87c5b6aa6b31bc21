"""DoReFa quantiser (paper Eq. 5) against hand-computed level tables and the STE."""
import numpy as np
import pytest
import tensorflow as tf

from empir_lib.core.errors import EmpirError
from empir_lib.nets.quantize import levels, quantize_activations, quantize_k, quantize_weights

# Worked by hand: round(x * (2^k - 1)) / (2^k - 1), where round is TensorFlow's
# (and the original code's) round-half-to-even: 7.5 -> 8 but 10.5 -> 10.
HAND = {
    1: ([0.0, 0.2, 0.49, 0.51, 0.9, 1.0], [0, 0, 0, 1, 1, 1]),
    2: ([0.0, 0.1, 0.2, 0.5, 0.6, 0.84, 0.9, 1.0], [0, 0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1]),
    4: ([0.0, 0.03, 0.04, 0.5, 0.7, 0.72, 1.0], [0, 0, 1 / 15, 8 / 15, 10 / 15, 11 / 15, 1]),
}


@pytest.mark.parametrize("k", [1, 2, 4])
def test_quantize_k_matches_hand_table(k):
    x, expected = HAND[k]
    np.testing.assert_allclose(quantize_k(tf.constant(x), k).numpy(), expected, atol=1e-7)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_activation_levels_and_clip(k):
    x = tf.constant(np.linspace(-1, 2, 301), tf.float32)
    q = quantize_activations(x, k).numpy()
    np.testing.assert_allclose(np.unique(q), levels(k), atol=1e-6)
    assert q[x.numpy() < 0].max() == 0 and q[x.numpy() > 1].min() == 1


def test_weight_levels_by_hand():
    # wbits=2: levels {-1, -1/3, 1/3, 1}; no zero level.
    np.testing.assert_allclose(levels(2, "weights"), [-1, -1 / 3, 1 / 3, 1])
    w = tf.constant([-3.0, -0.2, 0.0, 0.2, 3.0])
    t = np.tanh(w.numpy())
    u = t / np.abs(t).max() * 0.5 + 0.5           # [0, .40, .5, .60, 1]
    expected = 2 * np.round(u * 3) / 3 - 1        # round(1.2)=1, round(1.5)=2, round(1.8)=2
    np.testing.assert_allclose(quantize_weights(w, 2).numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(expected, [-1, -1 / 3, 1 / 3, 1 / 3, 1], atol=1e-6)
    # 1 bit: u = 0.5 rounds half-to-even to 0, so a zero weight maps to -1.
    assert quantize_weights(w, 1).numpy().tolist() == [-1, -1, -1, 1, 1]


def test_weight_max_is_layer_wide():
    w = tf.constant([[0.1, 0.1], [0.1, 5.0]])
    q = quantize_weights(w, 2).numpy()
    # One big weight sets the scale for the whole tensor, not per column.
    assert q[0, 0] == q[1, 0] == q[0, 1] and q[1, 1] == 1.0


@pytest.mark.parametrize("k", [1, 2, 4])
def test_straight_through_gradient(k):
    x = tf.constant([-0.5, 0.0, 0.3, 0.7, 1.0, 1.5])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(quantize_activations(x, k))
    g = tape.gradient(y, x).numpy()
    np.testing.assert_array_equal(g, [0, 1, 1, 1, 1, 0])


def test_weight_gradient_flows_through_max():
    w = tf.Variable([0.3, -2.0, 0.5])
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(quantize_weights(w, 4) * tf.constant([1.0, 0.0, 0.0]))
    g = tape.gradient(y, w).numpy()
    # The max|tanh| is at index 1; with no stop_gradient it receives gradient.
    assert g[1] != 0


def test_full_precision_is_identity():
    x = tf.constant([-0.7, 0.123, 3.0])
    for f in (quantize_k, quantize_weights, quantize_activations):
        np.testing.assert_array_equal(f(x, 32).numpy(), x.numpy())


@pytest.mark.parametrize("bad", [0, 33, 17, -1, "two", 2.5, None, True])
def test_bad_bits_are_refused(bad):
    with pytest.raises(EmpirError, match="bits"):
        quantize_k(tf.constant([0.5]), bad)
