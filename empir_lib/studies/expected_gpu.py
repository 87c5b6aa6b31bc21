"""The expected-accuracy study on an accelerator: what goes to the GPU and what comes back (issue 29).

The GPU machine has JAX but no TensorFlow, so a **bundle** carries the
members there as plain arrays (:func:`bundle`: every layer's kind and
options, its kernel, the vote's tie-break order, and the images), and
``scripts/expected_gpu.py`` runs :mod:`empir_lib.attack.expected_jax` on it.
What it writes back is read here into a results file with the usual
provenance (:func:`ingest`), beside the CPU study's files
(:mod:`empir_lib.studies.expected_study`).
"""
from __future__ import annotations

import json

import keras
import numpy as np

from ..core.errors import EmpirError
from ..nets import ensemble as ens_mod
from ..nets import quantize

_POOLS = {"MaxPooling2D": "maxpool", "AveragePooling2D": "avgpool"}


def layers(model: keras.Model) -> tuple[list[dict], list[np.ndarray]]:
    """One member's layers as plain dicts (kind and options) and their kernels, in order.

    Only chain networks of the layers the paper's MNIST and CIFAR-10
    networks use are carried; anything else is refused by name, so that a
    bundle never silently drops a layer.
    """
    out, kernels = [], []
    for layer in model.layers:
        name = type(layer).__name__
        if name == "InputLayer":
            continue
        if isinstance(layer, quantize.QuantConv2D):
            if layer.groups != 1 or layer.untied_bias:
                raise EmpirError(f"{model.name}/{layer.name}: grouped or untied-bias convolutions are not carried.")
            spec = {"kind": "conv", "strides": layer.strides, "padding": layer.padding}
        elif isinstance(layer, quantize.QuantDense):
            if layer.use_bias:
                raise EmpirError(f"{model.name}/{layer.name}: a dense bias is not carried.")
            spec = {"kind": "dense"}
        elif name in _POOLS:
            if layer.pool_size[0] != layer.pool_size[1] or layer.strides[0] != layer.strides[1]:
                raise EmpirError(f"{model.name}/{layer.name}: only square pools are carried.")
            spec = {"kind": _POOLS[name], "size": int(layer.pool_size[0]), "stride": int(layer.strides[0]),
                    "padding": layer.padding.upper()}
        elif name in ("ReLU", "Flatten"):
            spec = {"kind": name.lower()}
        else:
            raise EmpirError(f"{model.name}/{layer.name}: a {name} layer is not carried to JAX.")
        if spec["kind"] in ("conv", "dense"):
            rounding = layer.rounding
            if rounding is not None and rounding["relaxation"] != "ste":
                raise EmpirError(f"{model.name}/{layer.name}: only the 'ste' relaxation is carried.")
            spec.update(wbits=layer.wbits, abits=layer.abits,
                        stochastic=rounding is not None and rounding["inference"] == "sample",
                        kernel=len(kernels))
            kernels.append(np.asarray(layer.kernel.numpy(), np.float32))
        out.append(spec)
    return out, kernels


def bundle(ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray) -> dict:
    """The arrays :func:`empir_lib.attack.expected_jax.members` reads, with images ``x`` and labels ``y``."""
    arrays, specs = {}, []
    for k, m in enumerate(ens.members):
        spec, kernels = layers(m)
        for j, layer in enumerate(spec):
            if "kernel" in layer:
                arrays[f"m{k}-l{j}"] = kernels[layer.pop("kernel")]
        specs.append(spec)
    x = np.asarray(x, np.float32)
    y = np.asarray(y).reshape(-1).astype(np.int64)
    if len(x) != len(y):
        raise EmpirError(f"{len(x)} images and {len(y)} labels: pass the same number.")
    return {**arrays, "layers": np.array(json.dumps(specs)), "order": ens_mod.priority(ens),
            "names": np.array(json.dumps(list(ens.names))), "x": x, "y": y}
