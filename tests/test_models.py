"""Network builders: parameter counts, which layers are quantised, bad input."""
import numpy as np
import pytest

from empir_lib.core.errors import EmpirError
from empir_lib.nets import models


def test_parameter_counts():
    assert models.mnist_conv().count_params() == 709_888
    assert models.cifar_conv().count_params() == 116_704
    assert models.mnist_conv(2, 4).count_params() == 709_888


def test_mnist_quantises_all_convs_including_input():
    q = models.quantised_layers(models.mnist_conv(2, 4))
    assert q == [("conv1", 2, 4), ("conv2", 2, 4), ("conv3", 2, 4)]
    assert models.quantised_layers(models.mnist_conv()) == []


def test_input_image_is_quantised_in_low_precision_mnist():
    m = models.mnist_conv(32, 1)  # 1-bit input: the image becomes black and white
    x = np.full((1, 28, 28, 1), 0.3, np.float32)
    np.testing.assert_allclose(m(x).numpy(), m(np.zeros_like(x)).numpy())
    assert not np.allclose(m(x).numpy(), m(np.full_like(x, 0.7)).numpy())


def test_cifar_fc_layers_stay_full_precision():
    names = [n for n, _, _ in models.quantised_layers(models.cifar_conv(2, 2))]
    assert names == ["conv1", "conv2", "conv3"]


def test_per_layer_bits():
    q = models.quantised_layers(models.mnist_conv([1, 2, 32], [4, 4, 32]))
    assert q == [("conv1", 1, 4), ("conv2", 2, 4)]
    with pytest.raises(EmpirError, match="3 quantisable layers"):
        models.mnist_conv([1, 2], 4)


def test_alexnet_first_and_last_layers_stay_fp():
    m = models.alexnet_tiny(2, 2, width=0.25)
    names = [n for n, _, _ in models.quantised_layers(m)]
    assert names == ["conv2", "conv3", "conv4", "conv5", "ip1", "ip2"]
    assert m.output_shape == (None, 200)
    assert m.get_layer("conv1").bias.shape == (1, 29, 29, 24)
    assert m.get_layer("conv2").kernel.shape == (5, 5, 12, 64)  # grouped: cin/2


def test_full_alexnet_shapes_match_original():
    m = models.alexnet()
    assert m.get_layer("conv1").bias.shape == (1, 54, 54, 96)
    assert m.get_layer("conv4").kernel.shape == (3, 3, 192, 384)
    assert m.get_layer("ip1").kernel.shape == (9216, 4096)


def test_unit_norm_initialisation():
    k = models.mnist_conv().get_layer("conv2").kernel.numpy()
    np.testing.assert_allclose(np.sqrt((k ** 2).sum(axis=(0, 1, 2))), 1.0, rtol=1e-5)


def test_grouped_convolution_keeps_groups_apart():
    m = models.alexnet_tiny(width=0.25)
    layer = m.get_layer("conv2")
    x = np.random.RandomState(0).rand(1, 8, 8, layer.kernel.shape[2] * 2).astype(np.float32)
    y = layer(x).numpy()
    x2 = x.copy()
    x2[..., : x.shape[-1] // 2] = 0  # change only the first input half
    y2 = layer(x2).numpy()
    half = y.shape[-1] // 2
    np.testing.assert_allclose(y[..., half:], y2[..., half:])
    assert not np.allclose(y[..., :half], y2[..., :half])


def test_unknown_architecture():
    with pytest.raises(EmpirError, match="unknown architecture 'resnet'.*mnist_conv"):
        models.build("resnet")


@pytest.mark.parametrize("x,msg", [
    (np.zeros((2, 32, 32, 3), np.float32), "shape"),
    (np.full((2, 28, 28, 1), np.nan, np.float32), "NaN"),
    (np.full((2, 28, 28, 1), 2.0, np.float32), r"\[0, 1\]"),
    (np.zeros((2, 28, 28, 1), np.uint8), "integers"),
    (np.array([["a"]]), "dtype"),
])
def test_check_images_rejects_bad_batches(x, msg):
    with pytest.raises(EmpirError, match=msg):
        models.check_images(x, (28, 28, 1))
