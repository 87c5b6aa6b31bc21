"""Stochastic-quantiser members: building them, switching how they evaluate, and how random they are.

A *stochastic member* is one of the paper's networks whose quantised layers
round their inputs stochastically (:mod:`empir_lib.nets.quantize`, "Stochastic
rounding": the original code's ``stocRound``, unbiased, with a named
relaxation for training, in the spirit of Farkya et al. 2023).  Its weights
are those of a deterministic member of the same precision, so any zoo member
can be made stochastic after training (:func:`to_stochastic`), or a member can
be trained stochastic from the start (:func:`build`, and
:func:`empir_lib.nets.diversity.train_joint`).

How a stochastic member evaluates is always named (``inference``): ``'sample'``
(a fresh draw on every forward pass, the defence as deployed) or
``'nearest'`` (Eq. 5's deterministic rounding); :func:`with_inference`
switches a trained model.  :func:`fixed_draw` freezes one noise draw: a
deterministic network per draw, for attacks that use the defence's structure
(attack K frozen draws as an ensemble, then transfer; issue 29).
:func:`disagreement` is the randomness diagnostic
the worst-case suite reports beside EOT (Athalye et al. 2018, section 4):
the share of images whose deployed class differs between forward passes.
"""
from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from ..core.errors import EmpirError, check_choice, check_positive_int
from . import ensemble as ens_mod
from . import models, quantize


def _quantised(layer: keras.layers.Layer) -> bool:
    return (isinstance(layer, (quantize.QuantConv2D, quantize.QuantDense))
            and layer.abits != quantize.FULL_PRECISION)


def _clone(model: keras.Model, change: Callable[[keras.layers.Layer, int], dict | None]) -> keras.Model:
    """A copy of ``model`` whose quantised layers get ``rounding=change(layer, i)``, weights copied."""
    counter = iter(range(len(model.layers)))

    def clone_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        if _quantised(layer):
            config.pop("rounding", None)
            rounding = change(layer, next(counter))
            if rounding is not None:
                config["rounding"] = rounding
        return layer.__class__.from_config(config)

    new = keras.models.clone_model(model, clone_function=clone_layer)
    new.set_weights(model.get_weights())
    return new


def is_stochastic(model: keras.Model) -> bool:
    """True when some layer of ``model`` rounds stochastically."""
    return any(getattr(layer, "rounding", None) is not None for layer in model.layers)


def to_stochastic(model: keras.Model, relaxation: str = "ste", inference: str = "sample",
                  temperature: float = quantize.CONCRETE_TEMPERATURE, seed: int | None = 0) -> keras.Model:
    """A copy of ``model`` (same weights) whose every quantised layer rounds its input stochastically.

    The k-th quantised layer's draws are seeded by ``seed + k`` (None: unseeded).
    A full-precision model has nothing to round and is refused.
    """
    check_choice(inference, quantize.INFERENCE, "inference rounding")
    if not any(_quantised(layer) for layer in model.layers):
        raise EmpirError(f"{model.name} has no quantised layer: a full-precision model has nothing to round "
                         "stochastically.")
    if seed is not None:
        seed = check_positive_int(seed, "seed", 0)

    def change(layer: keras.layers.Layer, k: int) -> dict:
        return quantize.check_rounding({"mode": "stochastic", "relaxation": relaxation, "temperature": temperature,
                                        "inference": inference, "seed": None if seed is None else seed + k},
                                       layer.abits)

    return _clone(model, change)


def with_inference(model: keras.Model, inference: str) -> keras.Model:
    """A copy of a stochastic model (same weights) that evaluates with ``inference``: 'sample' or 'nearest'."""
    check_choice(inference, quantize.INFERENCE, "inference rounding")
    if not is_stochastic(model):
        raise EmpirError(f"{model.name} rounds deterministically already; with_inference is for stochastic models.")
    return _clone(model, lambda layer, k: None if layer.rounding is None else {**layer.rounding,
                                                                               "inference": inference})


class FixedDraw(keras.layers.Layer):
    """Stochastic rounding (module docstring) with one frozen draw: ``u`` fixed per activation position.

    ``floor(s) + [u < s - floor(s)]`` with ``s = (2^k - 1) clip(a, 0, 1)``, the
    same rule as the stochastic quantiser, but with the uniform noise ``u``
    drawn once (shape of one image's activations, shared by every image of a
    batch): a deterministic function.  Its gradient is the straight-through
    one of the ``'ste'`` relaxation.
    """

    def __init__(self, bits: int, noise: np.ndarray, **kwargs: object):
        super().__init__(**kwargs)
        self.bits = quantize.check_stochastic_bits(bits)
        self.noise = tf.constant(np.asarray(noise, np.float32))

    def call(self, x: tf.Tensor) -> tf.Tensor:
        n = float(2**self.bits - 1)
        v = tf.clip_by_value(x, 0.0, 1.0) * n
        floor = tf.floor(v)
        hard = floor + tf.cast(self.noise < v - floor, v.dtype)
        return (hard + (v - tf.stop_gradient(v))) / n


def fixed_draw(model: keras.Model, seed: int, noise: float | None = None) -> keras.Model:
    """A deterministic copy of a stochastic model: every stochastic layer's noise drawn once, from ``seed``.

    ``noise`` replaces the draw by one constant (0.5 rounds to the nearest
    level, up to ties: the check that the frozen rule is Eq. 5's rounding).
    The model must be a chain of layers (the paper's networks are).
    """
    if not is_stochastic(model):
        raise EmpirError(f"{model.name} rounds deterministically already; a fixed draw needs a stochastic model.")
    seed = check_positive_int(seed, "seed", 0)
    rng = np.random.default_rng(seed)
    near = with_inference(model, "nearest")
    x = inp = keras.Input(tuple(near.input_shape[1:]))
    for layer in near.layers[1:]:
        if getattr(layer, "rounding", None) is not None:
            shape = tuple(x.shape[1:])
            u = np.full(shape, noise, np.float32) if noise is not None else rng.uniform(size=shape)
            x = FixedDraw(layer.abits, u, name=f"{layer.name}_draw")(x)
        x = layer(x)
    return keras.Model(inp, x, name=f"{model.name}_draw{seed}")


def build(arch: str, wbits: models.Bits, abits: models.Bits, relaxation: str = "ste", inference: str = "sample",
          temperature: float = quantize.CONCRETE_TEMPERATURE, seed: int | None = 0,
          **kwargs: object) -> keras.Model:
    """:func:`empir_lib.nets.models.build`, then :func:`to_stochastic`: a freshly initialised stochastic member."""
    return to_stochastic(models.build(arch, wbits, abits, **kwargs), relaxation, inference, temperature, seed)


def reseed(model: keras.Model, seed: int) -> None:
    """Set every stochastic layer's random state from ``(seed, layer index)``: the draws that follow repeat."""
    seed = check_positive_int(seed, "seed", 0)
    for k, layer in enumerate(model.layers):
        gen = getattr(layer, "seed_generator", None)
        if gen is not None:
            gen.state.assign(np.array([seed, k], dtype=str(gen.state.dtype)))


def disagreement(ens: ens_mod.Ensemble, x: ArrayLike, draws: int = 10, batch_size: int = 500) -> dict:
    """The randomness diagnostic: how often the deployed class changes between forward passes.

    Runs ``draws`` predictions of ``ens`` on ``x`` and returns ``share`` (the
    fraction of images not classified the same in every draw), ``per_image``
    (the number of distinct classes per image) and ``majority`` (the most
    frequent class per image, ties to the smaller class).  A deterministic
    ensemble gives share 0.
    """
    draws = check_positive_int(draws, "draws", 2)
    preds = np.stack([ens_mod.predict(ens, x, batch_size) for _ in range(draws)])
    distinct = np.array([len(np.unique(preds[:, i])) for i in range(preds.shape[1])])
    return {"share": float(np.mean(distinct > 1)), "per_image": distinct, "majority": majority(preds),
            "draws": draws}


def majority(preds: ArrayLike) -> np.ndarray:
    """The most frequent class per column of ``preds`` (draws, images); ties go to the smaller class."""
    preds = np.asarray(preds)
    k = int(preds.max(initial=0)) + 1
    counts = np.apply_along_axis(lambda c: np.bincount(c, minlength=k), 0, preds)
    return counts.argmax(0)


def majority_tf(preds: tf.Tensor, num_classes: int) -> tf.Tensor:
    """:func:`majority` inside a graph: ``preds`` (draws, batch) int -> (batch,) int32."""
    counts = tf.reduce_sum(tf.one_hot(preds, num_classes, dtype=tf.int32), 0)
    return tf.argmax(counts, -1, output_type=tf.int32)
