"""MNISTconv, CIFARconv and AlexNet exactly as the original EMPIR code builds them.

Every builder takes ``(wbits, abits)``: one int for every quantisable layer,
or a list with one entry per quantisable layer (the original's
``--wbitsList/--abitsList``).  ``FULL_PRECISION`` (32) means full precision.  Every model outputs
**logits**; softmax is applied by whoever needs probabilities.

The layer tables are in the original code, appendix section 1
(book/appendix_original_code.ipynb), and the paper's Table 3.
"""
from __future__ import annotations

import keras
import numpy as np
from numpy.typing import ArrayLike

from ..core import settings
from ..core.errors import FULL_PRECISION, EmpirError, check_bits, check_choice, check_positive_int
from .quantize import QuantConv2D, QuantDense

Bits = int | list[int] | tuple[int, ...]


def _per_layer(bits: Bits, n: int, what: str) -> list[int]:
    """Expand one precision to ``n`` layers, or check a per-layer list."""
    if isinstance(bits, (list, tuple)):
        if len(bits) != n:
            raise EmpirError(f"{what} has {len(bits)} entries; this network has {n} quantisable layers.")
        return [check_bits(b, what) for b in bits]
    return [check_bits(bits, what)] * n


def _name(wbits: list[int], abits: list[int]) -> str:
    return "fp" if settings.is_full_precision(wbits, abits) else "lp"


def mnist_conv(wbits: Bits = FULL_PRECISION, abits: Bits = FULL_PRECISION) -> keras.Model:
    """MNISTconv (the original code, appendix section 1.2; paper Table 3): 709,888 weights, no biases.

    conv 8x8x64 s2 SAME -> ReLU -> conv 6x6x128 s2 VALID -> ReLU
    -> conv 5x5x128 VALID -> ReLU -> flatten -> FC 128->10 (always FP).
    In a low-precision model all three convolutions are quantised, including
    conv1's input: the image itself is rounded to 2^abits grey levels.
    """
    w, a = _per_layer(wbits, 3, "wbits"), _per_layer(abits, 3, "abits")
    x = inp = keras.Input((28, 28, 1), name="image")
    for i, (f, k, s, p) in enumerate([(64, 8, 2, "same"), (128, 6, 2, "valid"), (128, 5, 1, "valid")]):
        x = QuantConv2D(f, k, s, p, w[i], a[i], name=f"conv{i + 1}")(x)
        x = keras.layers.ReLU(name=f"relu{i + 1}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    out = QuantDense(10, name="logits")(x)
    return keras.Model(inp, out, name=f"mnist_conv_{_name(w, a)}")


def cifar_conv(wbits: Bits = FULL_PRECISION, abits: Bits = FULL_PRECISION) -> keras.Model:
    """CIFARconv as the original code builds it (appendix section 1.3): 116,704 weights.

    The paper's Table 3 lists 8x8x64 convolutions; the released code builds
    Caffe's ``cifar10_quick`` instead, and its checkpoints are that network, so
    we follow the code:

    conv 5x5x32 -> maxpool 3/2 -> ReLU -> conv 5x5x32 -> ReLU -> avgpool 3/2
    -> conv 5x5x64 -> ReLU -> avgpool 3/2 -> flatten (576) -> FC 64 (no
    activation) -> FC 10.  Pools are VALID (TF floors: 15/7/3, not Caffe's
    16/8/4).  The two FC layers stay FP and have nothing between them.
    """
    w, a = _per_layer(wbits, 3, "wbits"), _per_layer(abits, 3, "abits")
    x = inp = keras.Input((32, 32, 3), name="image")
    x = QuantConv2D(32, 5, 1, "same", w[0], a[0], name="conv1")(x)
    x = keras.layers.MaxPooling2D(3, 2, "valid", name="pool1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = QuantConv2D(32, 5, 1, "same", w[1], a[1], name="conv2")(x)
    x = keras.layers.ReLU(name="relu2")(x)
    x = keras.layers.AveragePooling2D(3, 2, "valid", name="pool2")(x)
    x = QuantConv2D(64, 5, 1, "same", w[2], a[2], name="conv3")(x)
    x = keras.layers.ReLU(name="relu3")(x)
    x = keras.layers.AveragePooling2D(3, 2, "valid", name="pool3")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = QuantDense(64, name="ip1")(x)
    out = QuantDense(10, name="logits")(x)
    return keras.Model(inp, out, name=f"cifar_conv_{_name(w, a)}")


def _grouped_init(wbits: int) -> keras.initializers.Initializer:
    # Conv2DGroup (FP) uses He init; Conv2DGroup_lowprecision a plain
    # truncated normal of std 0.2 that is *not* normalised (the original code, appendix section 1.1).
    if wbits == FULL_PRECISION:
        return keras.initializers.VarianceScaling(2.0, "fan_in", "truncated_normal")
    return keras.initializers.TruncatedNormal(stddev=0.2)


def alexnet(wbits: Bits = FULL_PRECISION, abits: Bits = FULL_PRECISION, input_shape: tuple = (224, 224, 3),
            num_classes: int = 1000, width: float = 1.0, conv1_kernel: int = 12, conv1_stride: int = 4
            ) -> keras.Model:
    """AlexNet as the original builds it (appendix section 1.4; tensorpack's DoReFa AlexNet).

    conv1 12x12x96 s4 VALID + untied bias (always FP) -> ReLU
    -> conv2 5x5x256, 2 groups -> BN -> maxpool 3/2 SAME -> ReLU
    -> conv3 3x3x384 -> BN -> maxpool 3/2 SAME -> ReLU
    -> conv4 3x3x384, 2 groups -> BN -> ReLU -> conv5 3x3x256, 2 groups -> BN
    -> maxpool 3/2 VALID -> ReLU -> FC 4096 (+bias) -> BN -> ReLU
    -> FC 4096 -> BN -> ReLU -> FC classes (+bias, always FP).

    Quantisable layers (six, in this order for per-layer lists): conv2, conv3,
    conv4, conv5, ip1, ip2.  No dropout, no LRN.  BN uses the TF1 defaults
    the original ran with (momentum 0.99, epsilon 1e-3).  ``width`` scales
    every hidden width (96/256/384/384/256/4096/4096), rounded to an even number
    so the grouped layers still split in two.
    """
    w, a = _per_layer(wbits, 6, "wbits"), _per_layer(abits, 6, "abits")
    if not (isinstance(width, (int, float)) and 0 < width <= 4):
        raise EmpirError(f"width={width!r} must be a number in (0, 4].")
    check_positive_int(num_classes, "num_classes", 2)

    def c(n: int) -> int:
        return max(2, int(round(n * width / 2)) * 2)

    def bn(name: str) -> keras.layers.Layer:
        return keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-3, name=name)

    x = inp = keras.Input(tuple(input_shape), name="image")
    x = QuantConv2D(c(96), conv1_kernel, conv1_stride, "valid", untied_bias=True, name="conv1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = QuantConv2D(c(256), 5, 1, "same", w[0], a[0], groups=2,
                    kernel_initializer=_grouped_init(w[0]), name="conv2")(x)
    x = bn("bn1")(x)
    x = keras.layers.MaxPooling2D(3, 2, "same", name="pool1")(x)
    x = keras.layers.ReLU(name="relu2")(x)
    x = QuantConv2D(c(384), 3, 1, "same", w[1], a[1], name="conv3")(x)
    x = bn("bn2")(x)
    x = keras.layers.MaxPooling2D(3, 2, "same", name="pool2")(x)
    x = keras.layers.ReLU(name="relu3")(x)
    x = QuantConv2D(c(384), 3, 1, "same", w[2], a[2], groups=2,
                    kernel_initializer=_grouped_init(w[2]), name="conv4")(x)
    x = bn("bn3")(x)
    x = keras.layers.ReLU(name="relu4")(x)
    x = QuantConv2D(c(256), 3, 1, "same", w[3], a[3], groups=2,
                    kernel_initializer=_grouped_init(w[3]), name="conv5")(x)
    x = bn("bn4")(x)
    x = keras.layers.MaxPooling2D(3, 2, "valid", name="pool3")(x)
    x = keras.layers.ReLU(name="relu5")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = QuantDense(c(4096), w[4], a[4], use_bias=True, name="ip1")(x)
    x = bn("bn5")(x)
    x = keras.layers.ReLU(name="relu6")(x)
    x = QuantDense(c(4096), w[5], a[5], name="ip2")(x)
    x = bn("bn6")(x)
    x = keras.layers.ReLU(name="relu7")(x)
    out = QuantDense(num_classes, use_bias=True, name="logits")(x)
    return keras.Model(inp, out, name=f"alexnet_{_name(w, a)}")


def alexnet_tiny(wbits: Bits = FULL_PRECISION, abits: Bits = FULL_PRECISION, width: float = 0.5) -> keras.Model:
    """AlexNet adapted to Tiny ImageNet (64x64 RGB, 200 classes).

    Same topology and quantisation rules as :func:`alexnet`.  Two changes make
    it fit the smaller input: conv1 is 8x8 with stride 2 (instead of 12x12 /
    4, which would leave a 1x1 map before the classifier), giving 29 -> 15 -> 8
    -> 3x3 feature maps; and ``width`` (default 0.5) scales every hidden width
    so that it trains on a CPU.
    """
    return alexnet(wbits, abits, input_shape=(64, 64, 3), num_classes=200, width=width,
                   conv1_kernel=8, conv1_stride=2)


ARCHITECTURES = {"mnist_conv": mnist_conv, "cifar_conv": cifar_conv,
                 "alexnet": alexnet, "alexnet_tiny": alexnet_tiny}


def build(arch: str, wbits: Bits = FULL_PRECISION, abits: Bits = FULL_PRECISION, **kwargs: object) -> keras.Model:
    """Build a network by name: ``build('mnist_conv', wbits=2, abits=4)``."""
    check_choice(arch, tuple(ARCHITECTURES), "architecture")
    return ARCHITECTURES[arch](wbits, abits, **kwargs)


def check_images(x: ArrayLike, input_shape: tuple, what: str = "images") -> np.ndarray:
    """Validate a batch of images for a model: shape, dtype, finiteness, range.

    Returns float32 NHWC.  A batch that is NaN/Inf, out of the [0, 1] pixel
    range, or shaped for another model gets a message naming what is wrong.
    """
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise EmpirError(f"{what} have dtype {arr.dtype}; pass a float array scaled to [0, 1].")
    expected = tuple(int(d) for d in input_shape[-3:])
    if arr.ndim == len(expected):
        arr = arr[None]
    if arr.ndim != len(expected) + 1 or tuple(arr.shape[1:]) != expected:
        raise EmpirError(f"{what} have shape {tuple(np.shape(x))}; this model expects "
                         f"(N, {', '.join(map(str, expected))}).")
    if np.issubdtype(arr.dtype, np.integer):
        raise EmpirError(f"{what} are integers ({arr.dtype}); divide by 255 to get floats in [0, 1].")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise EmpirError(f"{what} contain NaN or Inf values ({int((~np.isfinite(arr)).sum())} of them).")
    lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
    if lo < 0.0 or hi > 1.0:
        raise EmpirError(f"{what} span [{lo:.3g}, {hi:.3g}]; pixels must lie in [0, 1].")
    return arr


def quantised_layers(model: keras.Model) -> list[tuple[str, int, int]]:
    """(layer name, wbits, abits) for every layer that has a quantiser."""
    return [(layer.name, layer.wbits, layer.abits) for layer in model.layers
            if isinstance(layer, (QuantConv2D, QuantDense))
            and not settings.is_full_precision(layer.wbits, layer.abits)]
