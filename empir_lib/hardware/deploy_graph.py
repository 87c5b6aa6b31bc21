"""A member as an ONNX graph on integer kernels: Eq. 5's levels held as integer codes (paper section 3.3).

Our Keras members *emulate* DoReFa quantisation in float32, so a low-precision
member runs no faster than the FP one.  This module writes each member as a
graph for a runtime whose CPU kernels compute in 8-bit integers.  No calibration is
needed: DoReFa's levels are an integer grid with one scale per layer (Eq. 5,
n = 2^k - 1), and we set the scales from the member's bits:

    activations  a = i / n,          i in 0..n   -> uint8 code i,       scale 1/n_a
    weights      w = (2j - n) / n,   j in 0..n   -> int8 code 2j - n,   scale 1/n_w

A quantised layer is then an integer product of codes (exact, in int32) times
1/(n_a n_w).  Which ONNX Runtime kernel each layer gets (as measured on this
CPU when the module was written; :func:`to_onnx` reports the choice per layer):

* ``QLinearConv`` (1.5-3x faster than float ``Conv``) when only ReLU and
  max-pooling lie between a quantised convolution and the next quantised
  layer: its output is requantised straight to that layer's codes.  Rounding,
  ReLU (saturation at 0), the clip to n and max-pooling are monotone, so they
  commute; the exact value acc / (n_a n_w) has an odd denominator, so it is
  never within 1/(2 n_a n_w) of a tie, and float rounding cannot flip a code.
* ``MatMulInteger`` (3-4x faster than float at batch 100) for a quantised
  dense layer, or a convolution with a 1x1 output (which is one).
* a float ``Conv`` on the exactly dequantised levels for a quantised
  convolution followed by average pooling or batch norm (CIFARconv's conv2
  and conv3, AlexNet's): its output cannot be requantised to 8 bits exactly,
  and ``ConvInteger`` (int32 output) runs 3-6x *slower* than float.  Behind
  batch norm the next quantiser sees arbitrary floats, so there a value a hair
  from a rounding boundary can round either way: a few predictions in 10,000
  differ (chapter 6).
* float32 for the first layer and the FC layers the original keeps in full
  precision, and for every layer of an FP member.

LiteRT (TFLite/XNNPACK) was not chosen: its int8 path is its converter's
post-training calibration, which picks its own scales, and a member must keep
DoReFa's levels.  The AVX2 kernels sum uint8 x int8 products in pairs into
int16, so 2 n_a n_w must stay below 2^15 (a7w7 is the widest allowed).

:mod:`empir_lib.hardware.deploy` writes the graphs to files and runs them.
"""
from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
import onnx
from numpy.typing import ArrayLike
from onnx import TensorProto, helper, numpy_helper

from ..core.errors import FULL_PRECISION, EmpirError
from ..nets import quantize
from ..nets.quantize import QuantConv2D, QuantDense

OPSET = 17
# Layers between a quantised layer and the next one that commute with DoReFa's rounding (all monotone).
_MONOTONE = (keras.layers.ReLU, keras.layers.MaxPooling2D, keras.layers.Flatten)


def _levels(bits: int) -> int:
    return 2**bits - 1


def _integer(layer: keras.layers.Layer) -> bool:
    """Whether a layer's weights and inputs are both codes small enough for the uint8 x int8 kernels."""
    if not isinstance(layer, (QuantConv2D, QuantDense)) or FULL_PRECISION in (layer.wbits, layer.abits):
        return False
    if layer.abits > 8 or layer.wbits > 7 or 2 * _levels(layer.abits) * _levels(layer.wbits) >= 2**15:
        raise EmpirError(f"{layer.name} has wbits={layer.wbits}, abits={layer.abits}: codes of that width do "
                         "not fit uint8 x int8 kernels (activations need <= 8 bits, weights <= 7, "
                         "2 (2^a - 1)(2^w - 1) < 2^15).")
    return True


def weight_codes(kernel: ArrayLike, bits: int) -> np.ndarray:
    """int8 codes 2j - n of DoReFa weights (Eq. 5): w = code / n exactly, with n = 2^bits - 1."""
    n = _levels(bits)
    wq = np.asarray(quantize.quantize_weights(np.asarray(kernel, np.float32), bits), np.float64)
    return np.rint(wq * n).astype(np.int8)


class _Graph:
    """An ONNX graph being built: nodes, constants, and fresh names."""

    def __init__(self, nbits: bool = False):
        self.nodes, self.inits, self.count, self.nbits = [], [], 0, nbits

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, value: ArrayLike, hint: str, dtype: type = np.float32) -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(self, op: str, inputs: list[str], hint: str, **attrs: object) -> str:
        out = self.name(hint)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def _pads(layer: keras.layers.Layer, in_hw: tuple[int, int]) -> list[int]:
    """ONNX pads [top, left, bottom, right] for TF's padding: SAME puts the odd pixel at the end."""
    if layer.padding.upper() == "VALID":
        return [0, 0, 0, 0]
    k = layer.kernel_size if hasattr(layer, "kernel_size") else layer.pool_size
    s = layer.strides if isinstance(layer.strides, int) else layer.strides[0]
    total = [max((-(-n // s) - 1) * s + kk - n, 0) for n, kk in zip(in_hw, k)]
    return [total[0] // 2, total[1] // 2, total[0] - total[0] // 2, total[1] - total[1] // 2]


def _next_abits(layers: list, i: int) -> int | None:
    """The input bits of the next quantised layer if only monotone layers lie between, else None."""
    for layer in layers[i + 1:]:
        if isinstance(layer, _MONOTONE):
            continue
        return layer.abits if _integer(layer) else None
    return None


class _Tensor(NamedTuple):
    name: str
    codes: int | None  # n when the tensor holds uint8 codes of scale 1/n (already >= 0), None when float
    perm: np.ndarray | None = None  # Keras' (H, W, C) flatten order of an NCHW tensor flattened here


def _to_codes(g: _Graph, t: _Tensor, n: int) -> str:
    """Eq. 5's activation quantiser as codes: clip to [0, 1], then round(a n) (QuantizeLinear, half to even)."""
    if t.codes is not None:
        if t.codes != n:
            raise EmpirError(f"internal: codes of scale 1/{t.codes} reach a layer of scale 1/{n}.")
        return g.op("Clip", [t.name, g.const(0, "zero", np.uint8), g.const(n, "n", np.uint8)], "clip_codes")
    x = g.op("Clip", [t.name, g.const(0.0, "zero"), g.const(1.0, "one")], "clip")
    return g.op("QuantizeLinear", [x, g.const(1.0 / n, "scale"), g.const(0, "zp", np.uint8)], "codes")


def _to_float(g: _Graph, t: _Tensor) -> str:
    if t.codes is None:
        return t.name
    return g.op("DequantizeLinear", [t.name, g.const(1.0 / t.codes, "scale"), g.const(0, "zp", np.uint8)], "dq")


def _conv(g: _Graph, layer: QuantConv2D, t: _Tensor, next_abits: int | None, kinds: dict) -> _Tensor:
    in_shape, out_shape = layer.input.shape, layer.output.shape
    attrs = {"strides": [layer.strides] * 2, "pads": _pads(layer, tuple(in_shape[1:3])), "group": layer.groups}
    kernel = layer.kernel.numpy()
    oihw = (3, 2, 0, 1)
    if _integer(layer):
        na, nw = _levels(layer.abits), _levels(layer.wbits)
        codes = _to_codes(g, t, na)
        w = weight_codes(kernel, layer.wbits).transpose(oihw)
        if next_abits is not None and not layer.untied_bias:
            # One integer kernel, requantised straight to the next layer's codes (module docstring).
            nn = _levels(next_abits)
            y = g.op("QLinearConv", [codes, g.const(1.0 / na, "xs"), g.const(0, "xz", np.uint8),
                                     g.const(w, "w", np.int8), g.const(1.0 / nw, "ws"), g.const(0, "wz", np.int8),
                                     g.const(1.0 / nn, "ys"), g.const(0, "yz", np.uint8)], layer.name, **attrs)
            kinds[layer.name] = "int8 QLinearConv"
            return _Tensor(y, nn)
        if tuple(out_shape[1:3]) == (1, 1) and attrs["pads"] == [0, 0, 0, 0] and layer.groups == 1:
            # A 1x1 output is one matrix product: the fast integer GEMM, exact in int32.
            flat = g.op("Flatten", [codes], "flat")
            acc = g.op("MatMulInteger", [flat, g.const(w.reshape(w.shape[0], -1).T, "w", np.int8)], layer.name)
            y = g.op("Mul", [g.op("Cast", [acc], "acc", to=TensorProto.FLOAT), g.const(1.0 / (na * nw), "s")], "y")
            y = g.op("Reshape", [y, g.const([0, -1, 1, 1], "shape", np.int64)], "y4")
            kinds[layer.name] = "int8 MatMulInteger"
        else:
            # Average pooling or batch norm follows: the float kernel, on exactly the dequantised levels.
            x = g.op("DequantizeLinear", [codes, g.const(1.0 / na, "scale"), g.const(0, "zp", np.uint8)], "dq")
            # The weights stay int8 codes in the file; ORT dequantises them once, when the session starts.
            wf = g.op("DequantizeLinear", [g.const(w, "w", np.int8), g.const(1.0 / nw, "ws"),
                                           g.const(0, "wz", np.int8)], "w_levels")
            y = g.op("Conv", [x, wf], layer.name, **attrs)
            kinds[layer.name] = "float Conv (levels)"
    else:
        x = _to_float(g, t)
        if layer.abits != FULL_PRECISION:
            x = _to_float(g, _Tensor(_to_codes(g, _Tensor(x, None), _levels(layer.abits)), _levels(layer.abits)))
        wf = np.asarray(quantize.quantize_weights(kernel, layer.wbits)).transpose(oihw)
        y = g.op("Conv", [x, g.const(wf, "w")], layer.name, **attrs)
        kinds[layer.name] = "float Conv"
    if layer.untied_bias:
        y = g.op("Add", [y, g.const(layer.bias.numpy().transpose(0, 3, 1, 2), "bias")], "bias")
    return _Tensor(y, None)


def _dense(g: _Graph, layer: QuantDense, t: _Tensor, kinds: dict) -> _Tensor:
    kernel = layer.kernel.numpy()
    rows = t.perm if t.perm is not None else slice(None)
    if g.nbits and _integer(layer):
        y = _dense_nbits(g, layer, t, weight_codes(kernel, layer.wbits)[rows], kinds)
    elif _integer(layer):
        na, nw = _levels(layer.abits), _levels(layer.wbits)
        acc = g.op("MatMulInteger", [_to_codes(g, t, na), g.const(weight_codes(kernel, layer.wbits)[rows], "w",
                                                                   np.int8)], layer.name)
        y = g.op("Mul", [g.op("Cast", [acc], "acc", to=TensorProto.FLOAT), g.const(1.0 / (na * nw), "s")], "y")
        kinds[layer.name] = "int8 MatMulInteger"
    else:
        x = _to_float(g, t)
        if layer.abits != FULL_PRECISION:
            x = _to_float(g, _Tensor(_to_codes(g, _Tensor(x, None), _levels(layer.abits)), _levels(layer.abits)))
        wf = np.asarray(quantize.quantize_weights(kernel, layer.wbits))[rows]
        y = g.op("MatMul", [x, g.const(wf, "w")], layer.name)
        kinds[layer.name] = "float MatMul"
    if layer.use_bias:
        y = g.op("Add", [y, g.const(layer.bias.numpy(), "bias")], "bias")
    return _Tensor(y, None)


def _dense_nbits(g: _Graph, layer: QuantDense, t: _Tensor, codes: np.ndarray, kinds: dict) -> str:
    """A quantised dense layer whose weights are *stored* in 2 or 4 bits: ONNX Runtime's ``MatMulNBits``.

    The kernel computes in float32 on weights it unpacks as (q - zp) * scale; DoReFa's
    w = (2j - n)/n is q = j, zp = n/2, scale = 2/n, one scale and zero point per block of 32.
    """
    nw, bits = _levels(layer.wbits), 2 if layer.wbits <= 2 else 4 if layer.wbits <= 4 else 8
    k, n_out = codes.shape
    block = 32
    blocks = -(-k // block)
    q = np.zeros((n_out, blocks * block), np.uint8)
    q[:, :k] = ((codes.astype(np.int16) + nw) // 2).T  # j = (code + n) / 2
    q = q.reshape(n_out, blocks, block)
    per = 8 // bits
    packed = np.zeros((n_out, blocks, block // per), np.uint8)
    for i in range(per):  # element i of each group of `per` fills bits [i*bits, (i+1)*bits), low bits first
        packed |= q[:, :, i::per] << np.uint8(bits * i)
    x = _to_float(g, _Tensor(_to_codes(g, t, _levels(layer.abits)), _levels(layer.abits)))
    inputs = [x, g.const(packed, "w", np.uint8), g.const(np.full(n_out * blocks, 2.0 / nw), "scales"),
              g.const(np.full(n_out * blocks, nw / 2.0), "zero_points")]
    out = g.name(layer.name)
    g.nodes.append(helper.make_node("MatMulNBits", inputs, [out], name=out, domain="com.microsoft", K=k, N=n_out,
                                    bits=bits, block_size=block))
    kinds[layer.name] = f"{bits}-bit MatMulNBits (float compute)"
    return out


def _layer(g: _Graph, layer: keras.layers.Layer, t: _Tensor, layers: list, i: int, kinds: dict) -> _Tensor:
    if isinstance(layer, QuantConv2D):
        return _conv(g, layer, t, _next_abits(layers, i), kinds)
    if isinstance(layer, QuantDense):
        return _dense(g, layer, t, kinds)
    if isinstance(layer, keras.layers.ReLU):
        # Codes are >= 0 already: the requantisation's saturation at 0 was the ReLU.
        return t if t.codes is not None else _Tensor(g.op("Relu", [t.name], "relu"), None)
    if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
        op = "MaxPool" if isinstance(layer, keras.layers.MaxPooling2D) else "AveragePool"
        x = t.name if op == "MaxPool" else _to_float(g, t)
        attrs = {"kernel_shape": list(layer.pool_size), "strides": list(layer.strides),
                 "pads": _pads(layer, tuple(layer.input.shape[1:3]))}
        if op == "AveragePool" and attrs["pads"] != [0, 0, 0, 0]:
            raise EmpirError(f"{layer.name}: SAME average pooling is not deployed (TF excludes the padding).")
        return _Tensor(g.op(op, [x], layer.name, **attrs), t.codes if op == "MaxPool" else None)
    if isinstance(layer, keras.layers.BatchNormalization):
        x = _to_float(g, t)
        params = [g.const(v.numpy(), hint) for v, hint in zip(
            (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance), ("gamma", "beta", "mean", "var"))]
        return _Tensor(g.op("BatchNormalization", [x, *params], layer.name, epsilon=float(layer.epsilon)), None)
    if isinstance(layer, keras.layers.Flatten):
        h, w, c = layer.input.shape[1:]
        # Keras flattens (H, W, C); ONNX's NCHW flattens (C, H, W): the next dense layer's rows are permuted.
        perm = np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)
        return _Tensor(g.op("Flatten", [t.name], "flatten", axis=1), t.codes, perm)
    raise EmpirError(f"layer {layer.name} ({type(layer).__name__}) has no ONNX form here; the deployable "
                     "networks are those of empir_lib.nets.models.")


def to_onnx(model: keras.Model, nbits: bool = False) -> tuple[onnx.ModelProto, dict]:
    """The member as an ONNX graph (NHWC float images in, logits out) and {layer: kernel it runs on}.

    ``nbits=True`` stores the quantised dense layers' weights in 2 or 4 bits (:func:`_dense_nbits`)
    instead of int8 codes: smaller files, float compute.
    """
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    g, kinds = _Graph(nbits), {}
    shape = tuple(model.input_shape[1:])
    t = _Tensor(g.op("Transpose", ["image"], "nchw", perm=[0, 3, 1, 2]), None)
    for i, layer in enumerate(layers):
        t = _layer(g, layer, t, layers, i, kinds)
    g.nodes.append(helper.make_node("Identity", [t.name], ["logits"], name="logits"))
    graph = helper.make_graph(
        g.nodes, model.name, [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", *shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", int(model.output_shape[-1])])],
        g.inits)
    # MatMulNBits is ONNX Runtime's own operator (domain com.microsoft); the int8 graph is plain ONNX.
    opsets = [helper.make_opsetid("", OPSET), *([helper.make_opsetid("com.microsoft", 1)] if nbits else [])]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="empir_lib")
    proto.ir_version = 9  # what every ONNX Runtime of the last two years reads
    onnx.checker.check_model(proto)
    return proto, kinds
