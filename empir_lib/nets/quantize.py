"""DoReFa quantisation (paper Eq. 5) as Keras 3 layers.

The paper's Eq. 5, as the original code implements it (its appendix section 2,
book/appendix_original_code.ipynb):

    quantize_k(x) = round((2^k - 1) x) / (2^k - 1)                (forward)
    d quantize_k / dx = 1                                          (straight-through)

    w_k = 2 * quantize_k( tanh(w) / (2 max|tanh(w)|) + 1/2 ) - 1   (weights)
    a_k = quantize_k( clip(a, 0, 1) )                              (activations)

Details that change numbers, and that we keep:

* the max in the weight rule is over the whole layer tensor (both groups of a
  grouped convolution), and the gradient flows through it.  Larq's ``DoReFa``
  puts a ``stop_gradient`` on that max; EMPIR does not.
* k-bit weights take 2^k levels in [-1, 1] with no zero level (k=2 gives
  {-1, -1/3, 1/3, 1}); there is no 1-bit ``sign * E|w|`` special case and no
  scale factor.
* activations are quantised at the *input* of each low-precision layer, so for
  the MNIST/CIFAR networks the raw image itself is quantised to 2^abits levels.
* the clip has gradient 0 outside [0, 1]; inside, the rounding is transparent.
* ``round`` is TensorFlow's round-half-to-even, as in the original
  (7.5 -> 8, 10.5 -> 10), not the schoolbook round-half-up.
* ``bits == 32`` means full precision: the quantiser is the identity.

**Stochastic rounding** (an addition for the book's "beyond EMPIR" chapter,
not part of the paper): the original code's optional ``stocRound`` rounds
``v = (2^k - 1) x`` up with probability equal to its fractional part,

    sq_k(x) = (floor(v) + Bernoulli(v - floor(v))) / (2^k - 1),   E[sq_k(x)] = x,

so the quantiser is unbiased.  Farkya et al. (2023) train members with a
*differentiable* stochastic quantiser; only their abstract is available to
us, so the relaxation here is our own, named choice (:data:`RELAXATIONS`):

* ``'ste'``: the forward pass is the hard sample, the backward pass the
  gradient of its expectation, ``d E[sq_k(x)] / dx = 1`` (the straight-through
  estimator applied to the expectation, not to the sample);
* ``'concrete'``: the forward pass is the hard sample, the backward pass the
  gradient of a binary Concrete (Gumbel-sigmoid) relaxation of the Bernoulli
  draw with temperature ``tau`` (Maddison et al. 2017, Jang et al. 2017's
  straight-through variant): ``soft = sigmoid((logit(p) + logit(u)) / tau)``
  with ``p = v - floor(v)`` clipped to [1e-4, 1 - 1e-4] and the same uniform
  ``u`` that draws the hard sample ``[logit(p) + logit(u) > 0]`` (which is 1
  with probability p); default ``tau = 2/3``.

Only the *activations* (each quantised layer's input) are rounded
stochastically; the weights keep Eq. 5's nearest rounding.  What a
stochastic layer does outside training is a named option
(:data:`INFERENCE`): ``'sample'`` (draw anew on every forward pass, the
default: the defence as deployed) or ``'nearest'`` (Eq. 5's deterministic
rounding).  Layers built without ``rounding`` are exactly the Eq. 5 layers
above, and their saved configurations are unchanged.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops
from numpy.typing import ArrayLike

from ..core.errors import FULL_PRECISION, EmpirError, check_bits, check_choice, check_finite_number, check_positive_int


def _round_ste(x):
    """round() whose gradient is the identity (the straight-through estimator)."""

    @tf.custom_gradient
    def f(v):
        return tf.round(v), lambda dy: dy

    return f(x)


def quantize_k(x: ArrayLike | tf.Tensor, bits: int) -> tf.Tensor:
    """Eq. 5, left: uniform k-bit quantisation of x in [0, 1], identity gradient."""
    bits = check_bits(bits)
    if bits == FULL_PRECISION:
        return x
    n = float(2**bits - 1)
    return _round_ste(x * n) / n


def quantize_weights(w: ArrayLike | tf.Tensor, bits: int) -> tf.Tensor:
    """Eq. 5, middle: DoReFa weights in [-1, 1], layer-wide max (no stop-gradient)."""
    bits = check_bits(bits, "wbits")
    if bits == FULL_PRECISION:
        return w
    t = tf.tanh(w)
    u = t / tf.reduce_max(tf.abs(t)) * 0.5 + 0.5
    return 2.0 * quantize_k(u, bits) - 1.0


def quantize_activations(a: ArrayLike | tf.Tensor, bits: int) -> tf.Tensor:
    """Eq. 5, right: clip to [0, 1] (zero gradient outside), then quantise."""
    bits = check_bits(bits, "abits")
    if bits == FULL_PRECISION:
        return a
    return quantize_k(tf.clip_by_value(a, 0.0, 1.0), bits)


def levels(bits: int, kind: str = "activations") -> np.ndarray:
    """The values a k-bit quantiser can output: for reading and for tests."""
    bits = check_bits(bits)
    if bits == FULL_PRECISION:
        raise EmpirError("bits=32 is full precision: it has no finite level table.")
    q = np.arange(2**bits) / (2**bits - 1)
    if kind == "activations":
        return q
    if kind == "weights":
        return 2 * q - 1
    raise EmpirError(f"unknown kind {kind!r}; choose 'activations' or 'weights'.")


# --- stochastic rounding (module docstring; the original code's ``stocRound``) ----------------------

ROUNDINGS = ("nearest", "stochastic")
RELAXATIONS = ("ste", "concrete")
INFERENCE = ("sample", "nearest")
CONCRETE_TEMPERATURE = 2.0 / 3.0
_P_CLIP = 1e-4


def check_stochastic_bits(bits: object, what: str = "bits") -> int:
    """``bits`` as an int in 1..16: a stochastic quantiser has no full-precision (32) case."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= int(bits) <= 16:
        raise EmpirError(f"{what}={bits!r}: the stochastic quantiser takes 1..16 bits (32, full precision, has "
                         "nothing to round; build that layer with rounding='nearest').")
    return int(bits)


def _uniform(shape: tf.Tensor, seed: object) -> tf.Tensor:
    # Strictly inside (0, 1): the concrete relaxation takes logit(u).
    return keras.random.uniform(shape, minval=1e-7, maxval=1.0 - 1e-7, seed=seed)


def quantize_k_stochastic(x: ArrayLike | tf.Tensor, bits: int, seed: object = None, relaxation: str = "ste",
                          temperature: float = CONCRETE_TEMPERATURE) -> tf.Tensor:
    """Stochastic rounding of x in [0, 1] to k bits: unbiased, ``E[q(x)] = x`` (module docstring).

    ``seed`` is an int, a ``keras.random.SeedGenerator`` (a fresh draw per
    call) or None.  ``relaxation`` names the backward pass: ``'ste'`` or
    ``'concrete'`` with ``temperature``.  The forward value is always exactly
    on the k-bit grid.
    """
    bits = check_stochastic_bits(bits)
    check_choice(relaxation, RELAXATIONS, "relaxation")
    tau = check_finite_number(temperature, "temperature", 1e-3, 1e3)
    x = tf.convert_to_tensor(x, tf.float32)
    n = float(2**bits - 1)
    v = x * n
    floor = tf.floor(v)
    frac = v - floor
    u = _uniform(tf.shape(v), seed)
    if relaxation == "ste":
        hard = floor + tf.cast(u < frac, v.dtype)
        # hard + (v - v): the value is exactly hard, the gradient that of v (the expectation's).
        return (hard + (v - tf.stop_gradient(v))) / n
    p = tf.clip_by_value(frac, _P_CLIP, 1.0 - _P_CLIP)
    logits = tf.math.log(p) - tf.math.log1p(-p) + tf.math.log(u) - tf.math.log1p(-u)
    soft = tf.sigmoid(logits / tau)
    hard = tf.stop_gradient(floor) + tf.cast(logits > 0, v.dtype)
    return (hard + (soft - tf.stop_gradient(soft))) / n


def quantize_activations_stochastic(a: ArrayLike | tf.Tensor, bits: int, seed: object = None,
                                    relaxation: str = "ste",
                                    temperature: float = CONCRETE_TEMPERATURE) -> tf.Tensor:
    """Eq. 5's activation rule with stochastic rounding: clip to [0, 1], then :func:`quantize_k_stochastic`."""
    return quantize_k_stochastic(tf.clip_by_value(tf.convert_to_tensor(a, tf.float32), 0.0, 1.0), bits, seed,
                                 relaxation, temperature)


def check_rounding(rounding: str | dict | None, abits: int) -> dict | None:
    """A layer's ``rounding`` option as a full dict (None for Eq. 5's nearest rounding).

    ``'stochastic'`` or ``{'mode': 'stochastic', 'relaxation': 'ste'|'concrete',
    'temperature': float, 'inference': 'sample'|'nearest', 'seed': int|None}``
    (missing keys take their defaults).  Refuses unknown keys and values, and
    stochastic rounding on a full-precision input.
    """
    if rounding is None or rounding == "nearest":
        return None
    if isinstance(rounding, str):
        rounding = {"mode": check_choice(rounding, ROUNDINGS, "rounding")}
    if not isinstance(rounding, dict):
        raise EmpirError(f"rounding={rounding!r} must be 'nearest', 'stochastic' or a dict of options.")
    keys = ("mode", "relaxation", "temperature", "inference", "seed")
    unknown = sorted(set(rounding) - set(keys))
    if unknown:
        raise EmpirError(f"unknown rounding option(s) {', '.join(unknown)}; the options are: {', '.join(keys)}.")
    out = {"mode": "stochastic", "relaxation": "ste", "temperature": CONCRETE_TEMPERATURE, "inference": "sample",
           "seed": None, **rounding}
    check_choice(out["mode"], ROUNDINGS, "rounding")
    if out["mode"] == "nearest":
        return None
    check_choice(out["relaxation"], RELAXATIONS, "relaxation")
    check_choice(out["inference"], INFERENCE, "inference rounding")
    out["temperature"] = check_finite_number(out["temperature"], "temperature", 1e-3, 1e3)
    if out["seed"] is not None:
        out["seed"] = check_positive_int(out["seed"], "seed", 0)
    check_stochastic_bits(abits, "abits")
    return out


class _Rounding:
    """What a quantised layer adds for stochastic rounding: its option, its seed generator, its input rule."""

    def _init_rounding(self, rounding: str | dict | None) -> None:
        self.rounding = check_rounding(rounding, self.abits)
        if self.rounding is not None:
            # Its state is a variable outside ``weights``: saved weights and checkpoints are unchanged.
            self.seed_generator = keras.random.SeedGenerator(self.rounding["seed"], name="rounding_seed")

    def _quantise_input(self, x: tf.Tensor, training: bool | None) -> tf.Tensor:
        r = self.rounding
        if r is None or (not training and r["inference"] == "nearest"):
            return quantize_activations(x, self.abits)
        return quantize_activations_stochastic(x, self.abits, self.seed_generator, r["relaxation"],
                                               r["temperature"])

    def _rounding_config(self) -> dict:
        # Only a stochastic layer records the option, so Eq. 5 layers save exactly as before.
        return {} if self.rounding is None else {"rounding": dict(self.rounding)}


# --- initialisers --------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="empir")
class UnitNorm(keras.initializers.Initializer):
    """Draw, then rescale every output unit's fan-in vector to unit L2 norm.

    The original ``Conv2D``/``Linear`` layers do this (appendix section 1.1); with
    the normalisation the draw's std does not matter, only its shape.
    ``distribution`` is 'truncated_normal' (convolutions) or 'normal' (dense).
    """

    def __init__(self, distribution: str = "truncated_normal", seed: int | None = None):
        self.distribution = distribution
        self.seed = seed

    def __call__(self, shape, dtype=None):
        if self.distribution == "truncated_normal":
            w = keras.random.truncated_normal(shape, stddev=0.1, seed=self.seed, dtype=dtype)
        else:
            w = keras.random.normal(shape, seed=self.seed, dtype=dtype)
        axes = tuple(range(len(shape) - 1))
        return w / ops.sqrt(ops.sum(ops.square(w), axis=axes, keepdims=True))

    def get_config(self) -> dict:
        return {"distribution": self.distribution, "seed": self.seed}


# --- layers --------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="empir")
class QuantConv2D(_Rounding, keras.layers.Layer):
    """Convolution with DoReFa weights and input activations (``Conv2D_lowprecision``).

    ``groups=2`` reproduces ``Conv2DGroup``: input channels split in half,
    output channels [0:C/2] see half 1 and [C/2:] see half 2.  The kernel has
    the original's layout (kh, kw, cin/groups, cout) and one quantiser max
    over the whole kernel.  ``untied_bias`` adds one bias per output element,
    as AlexNet's conv1 does.  ``rounding`` (default Eq. 5's nearest) makes the
    input quantiser stochastic (module docstring, :func:`check_rounding`).
    """

    def __init__(self, filters: int, kernel_size: int | tuple[int, int], strides: int = 1, padding: str = "same",
                 wbits: int = FULL_PRECISION, abits: int = FULL_PRECISION, groups: int = 1, untied_bias: bool = False,
                 kernel_initializer: keras.initializers.Initializer | None = None,
                 rounding: str | dict | None = None, **kwargs: object):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = tuple(kernel_size) if isinstance(kernel_size, (tuple, list)) else (kernel_size,) * 2
        self.strides = int(strides)
        self.padding = padding.upper()
        self.wbits = check_bits(wbits, "wbits")
        self.abits = check_bits(abits, "abits")
        self.groups = int(groups)
        self.untied_bias = bool(untied_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer or UnitNorm())
        self._init_rounding(rounding)

    def build(self, input_shape: tuple) -> None:
        cin = int(input_shape[-1])
        if cin % self.groups or self.filters % self.groups:
            raise EmpirError(f"{self.name}: {cin} input and {self.filters} output channels "
                             f"do not split into {self.groups} groups.")
        self.kernel = self.add_weight(
            name="kernel", shape=(*self.kernel_size, cin // self.groups, self.filters),
            initializer=self.kernel_initializer)
        if self.untied_bias:
            out = self.compute_output_shape(input_shape)
            self.bias = self.add_weight(name="bias", shape=(1, *out[1:]), initializer="zeros")

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        h, w = input_shape[1], input_shape[2]
        kh, kw = self.kernel_size
        s = self.strides

        def size(n, k):
            if n is None:
                return None
            return -(-n // s) if self.padding == "SAME" else (n - k) // s + 1

        return (input_shape[0], size(h, kh), size(w, kw), self.filters)

    def call(self, x: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        x = self._quantise_input(x, training)
        k = quantize_weights(self.kernel, self.wbits)
        if self.groups == 1:
            y = tf.nn.conv2d(x, k, self.strides, self.padding)
        else:
            # Explicit split: TF's fused grouped conv is missing on some CPU builds.
            xs = tf.split(x, self.groups, axis=-1)
            ks = tf.split(k, self.groups, axis=-1)
            y = tf.concat([tf.nn.conv2d(a, b, self.strides, self.padding) for a, b in zip(xs, ks)], -1)
        if self.untied_bias:
            y = y + self.bias
        return y

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "wbits": self.wbits,
                "abits": self.abits, "groups": self.groups, "untied_bias": self.untied_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                **self._rounding_config()}


@keras.saving.register_keras_serializable(package="empir")
class QuantDense(_Rounding, keras.layers.Layer):
    """Dense layer with DoReFa weights and input (``HiddenLinear_lowprecision``).

    With wbits = abits = 32 it is the original's FP ``Linear``/``HiddenLinear``.
    The bias, when present, stays full precision, as in the original.
    ``rounding`` as for :class:`QuantConv2D`.
    """

    def __init__(self, units: int, wbits: int = FULL_PRECISION, abits: int = FULL_PRECISION, use_bias: bool = False,
                 kernel_initializer: keras.initializers.Initializer | None = None,
                 rounding: str | dict | None = None, **kwargs: object):
        super().__init__(**kwargs)
        self.units = int(units)
        self.wbits = check_bits(wbits, "wbits")
        self.abits = check_bits(abits, "abits")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer or UnitNorm("normal"))
        self._init_rounding(rounding)

    def build(self, input_shape: tuple) -> None:
        self.kernel = self.add_weight(name="kernel", shape=(int(input_shape[-1]), self.units),
                                      initializer=self.kernel_initializer)
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:-1], self.units)

    def call(self, x: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        y = tf.matmul(self._quantise_input(x, training), quantize_weights(self.kernel, self.wbits))
        return y + self.bias if self.use_bias else y

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units, "wbits": self.wbits, "abits": self.abits,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                **self._rounding_config()}
