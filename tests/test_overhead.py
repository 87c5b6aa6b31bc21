"""Eq. 6 against hand-computed values, and the bit-packed storage against exact byte counts.

The Eq. 6 numbers below are worked out by hand from the formula (section 3.3),
not by calling the code under test twice.
"""
import math

import numpy as np
import pytest

from empir_lib.core import settings
from empir_lib.core.errors import EmpirError
from empir_lib.hardware import overhead
from empir_lib.nets import data, models, quantize, zoo

FP = (32, 32)


# --- Eq. 6 ------------------------------------------------------------------------------


@pytest.mark.parametrize("config, time, storage", [
    # MNIST EMPIR (Table 2): 1 + 2 * max(2, 4)/32 and 1 + 2 * 2/32.
    ([(2, 4), (2, 4), FP], 1.25, 1.125),
    # CIFAR EMPIR a2w4 + a2w2 + FP: 1 + 4/32 + 2/32 for both.
    ([(4, 2), (2, 2), FP], 1.1875, 1.1875),
    # AlexNet EMPIR {2,2} + {4,4} + FP (section 5.1).
    ([(2, 2), (4, 4), FP], 1.1875, 1.1875),
    # The single FP baseline is the unit.
    ([FP], 1.0, 1.0),
    # Three FP members: the paper's "3x" for time and storage (section 5.4).
    ([FP, FP, FP], 3.0, 3.0),
])
def test_eq6_for_the_papers_configurations(config, time, storage):
    assert overhead.ensemble_overheads(config) == pytest.approx({"time": time, "storage": storage})


def test_three_lp_members_reproduce_the_quoted_038_and_not_always_025():
    # Section 5.4 quotes 0.38x (time) and 0.25x (storage) for three LP members
    # without naming their precisions.  Our Figure 4 members are a4w2: time
    # 3 * 4/32 = 0.375 (rounds to the quoted 0.38), storage 3 * 2/32 = 0.1875,
    # not 0.25.  0.25 = 8/32 needs weight bits summing to 8, e.g. w2 + w2 + w4;
    # with 4-bit activations that configuration gives both quoted values.
    ours = overhead.ensemble_overheads([(2, 4)] * 3)
    assert ours["time"] == pytest.approx(0.375) and round(ours["time"], 2) == 0.38
    assert ours["storage"] == pytest.approx(0.1875)
    quoted = overhead.ensemble_overheads([(2, 4), (2, 4), (4, 4)])
    assert quoted == pytest.approx({"time": 0.375, "storage": 0.25})


def test_mnist_empir_time_is_at_not_below_the_25_percent_bound():
    # The paper says "<25%" overhead; with k_i = max(wbits, abits) = 4 the MNIST
    # ensemble's LP terms add exactly 2 * 4/32 = 0.25, so the bound is met only as <=.
    o = overhead.ensemble_overheads([(2, 4), (2, 4), FP])
    assert o["time"] - 1 == pytest.approx(0.25)


def test_native_throughput_rounds_up_to_a_built_in_width():
    # 2-bit operations run at the 4-bit rate on hardware with 4/8/16/32-bit datapaths.
    assert overhead.eq6_time(0, [2], "native") == pytest.approx(4 / 32)
    assert overhead.eq6_time(0, [2], "proportional") == pytest.approx(2 / 32)
    assert overhead.eq6_time(0, [5], "native") == pytest.approx(8 / 32)
    assert overhead.eq6_time(0, [16], "native") == pytest.approx(0.5)
    # The CIFAR ensemble's a2w2 member costs a 4-bit member's time there.
    assert overhead.ensemble_overheads([(4, 2), (2, 2), FP], "native")["time"] == pytest.approx(1.25)


def test_eq6_takes_any_throughput_function():
    # Hardware where low precision buys nothing: every LP member costs a full model.
    assert overhead.eq6_time(1, [2, 4], lambda b: 1.0) == pytest.approx(3.0)


def test_storage_counts_weight_bits_and_time_the_wider_operand():
    assert overhead.storage_bits(2, 4) == 2
    assert overhead.compute_bits(2, 4) == 4
    assert overhead.compute_bits(4, 1) == 4


@pytest.mark.parametrize("call, msg", [
    (lambda: overhead.eq6_storage(-1, [2]), ">= 0"),
    (lambda: overhead.eq6_storage(1.5, [2]), ">= 0"),
    (lambda: overhead.eq6_storage(1, [0]), "out of range"),
    (lambda: overhead.eq6_time(1, [2], "fastest"), "unknown throughput"),
    (lambda: settings.parse_precision("mnist-s1"), "names no precision"),
])
def test_bad_input_is_refused(call, msg):
    with pytest.raises(EmpirError, match=msg):
        call()


def test_parse_precision_reads_zoo_ids():
    assert settings.parse_precision("mnist-a4w2-s1") == (2, 4)
    assert settings.parse_precision("cifar10-a2w4-s2") == (4, 2)
    assert settings.parse_precision("mnist-fp-s3") == (32, 32)


def test_paper_configurations_follow_the_zoo():
    configs = overhead.paper_configurations()
    assert configs["mnist"] == [(2, 4), (2, 4), FP]
    assert configs["cifar10"] == [(4, 2), (2, 2), FP]


def test_sweep_is_figure_4s_grid():
    s = overhead.sweep(3, lp=(2, 4))
    assert np.isnan(s["time"][0, 0])
    assert s["time"][3, 0] == s["storage"][3, 0] == 3.0
    assert s["time"][0, 3] == pytest.approx(0.375)
    assert s["storage"][1, 2] == pytest.approx(1.125)
    # adding a member never makes the ensemble cheaper
    assert np.all(np.diff(s["time"][1:], axis=1) > 0) and np.all(np.diff(s["time"][:, 1:], axis=0) > 0)


def test_member_grid_is_indexed_abits_then_wbits():
    g = overhead.member_grid(bits=(1, 4))
    assert g["storage"][0, 1] == pytest.approx(4 / 32)   # abits=1, wbits=4
    assert g["storage"][1, 0] == pytest.approx(1 / 32)   # abits=4, wbits=1
    assert g["time"][1, 0] == pytest.approx(4 / 32)


# --- bit-packing --------------------------------------------------------------------------


def test_pack_codes_bit_layout_by_hand():
    # 2-bit codes 1, 2, 3 -> bits (lsb first) 10 01 11 -> byte 0b00111001 = 57.
    np.testing.assert_array_equal(overhead.pack_codes([1, 2, 3], 2), [57])
    # 4-bit codes 0xA, 0x5 -> one byte 0x5A
    np.testing.assert_array_equal(overhead.pack_codes([10, 5], 4), [0x5A])


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 8, 11, 16])
@pytest.mark.parametrize("count", [1, 7, 1001])
def test_pack_unpack_round_trip_and_size(bits, count):
    codes = np.random.default_rng(bits * count).integers(0, 2**bits, count)
    packed = overhead.pack_codes(codes, bits)
    assert packed.dtype == np.uint8 and packed.nbytes == math.ceil(count * bits / 8)
    np.testing.assert_array_equal(overhead.unpack_codes(packed, bits, count), codes)


def test_pack_refuses_codes_that_do_not_fit():
    with pytest.raises(EmpirError, match="0..3"):
        overhead.pack_codes([0, 4], 2)
    with pytest.raises(EmpirError, match="hold"):
        overhead.unpack_codes(np.zeros(1, np.uint8), 2, 5)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_codes_map_back_to_exactly_the_quantised_weights(bits):
    kernel = np.random.default_rng(bits).normal(0, 0.1, (5, 5, 8, 16)).astype(np.float32)
    codes = overhead.weight_codes(kernel, bits)
    # the largest |w| of the layer lands on an end level, 0 (w_k = -1) or 2^k - 1 (w_k = +1)
    assert codes.max() <= 2**bits - 1 and (codes.min() == 0 or codes.max() == 2**bits - 1)
    expected = quantize.quantize_weights(kernel, bits).numpy()
    np.testing.assert_array_equal(overhead.dequantise(codes, bits), expected)   # bit-exact, not approx


@pytest.fixture(scope="module")
def a4w2():
    return zoo.load("mnist-a4w2-s1")


def test_zoo_member_round_trip_is_exact(a4w2):
    records = overhead.pack_model(a4w2)
    quantised = overhead.quantised_kernels(a4w2)
    assert sorted(quantised) == ["conv1/kernel", "conv2/kernel", "conv3/kernel"]
    for w, got in zip(a4w2.weights, overhead.unpack_model(records)):
        want = quantize.quantize_weights(w.numpy(), 2).numpy() if w.path in quantised else w.numpy()
        np.testing.assert_array_equal(got, want)


def test_a_corrupted_byte_breaks_the_round_trip(a4w2):
    records = overhead.pack_model(a4w2)
    records[1]["data"] = records[1]["data"].copy()
    records[1]["data"][0] ^= 0xFF
    got = overhead.unpack_model(records)[1]
    assert not np.array_equal(got, quantize.quantize_weights(a4w2.weights[1].numpy(), 2).numpy())


def test_the_fp_twin_from_packed_bytes_gives_the_same_logits(a4w2):
    twin = overhead.fp_twin(a4w2, overhead.pack_model(a4w2))
    assert overhead.quantised_kernels(twin) == {}
    x, _ = data.load_sample("mnist", 32)
    np.testing.assert_array_equal(twin(x).numpy(), a4w2(x).numpy())


def test_packed_mnist_member_has_the_hand_computed_size(a4w2):
    # conv kernels 8*8*1*64 + 6*6*64*128 + 5*5*128*128 = 708,608 weights at 2 bits
    # = 177,152 bytes; the FP logits layer 128*10 floats = 5,120 bytes.
    r = overhead.storage_report(a4w2)
    assert r["packed_bytes"] == 177_152 + 5_120
    assert r["float_bytes"] == 4 * 709_888
    assert r["eq6"] == pytest.approx(2 / 32)
    assert r["measured"] == pytest.approx(2 / 32, rel=0.03)   # the FP layer is 0.18% of the weights


@pytest.mark.parametrize("wbits", [1, 2, 4])
def test_each_quantised_kernel_packs_to_wbits_over_32_of_its_float_size(wbits):
    model = models.mnist_conv(wbits=wbits, abits=4)
    for r in overhead.pack_model(model):
        n = math.prod(r["shape"])
        if r["bits"] == 32:
            assert r["data"].nbytes == 4 * n
        else:
            assert r["data"].nbytes == math.ceil(n * wbits / 8)
            assert r["data"].nbytes / (4 * n) == pytest.approx(wbits / 32, abs=1 / n)


def test_cifar_fp_layers_make_eq6_underestimate_storage():
    # CIFARconv keeps ip1 (576x64) and logits (64x10) in float32: 37,504 of 116,704 weights.
    # a2w2: 79,200 conv weights * 2 bits = 19,800 bytes + 37,504 * 4 = 150,016 bytes.
    r = overhead.storage_report(models.cifar_conv(wbits=2, abits=2))
    assert r["packed_bytes"] == 19_800 + 150_016
    assert r["fp_share"] == pytest.approx(37_504 / 116_704)
    assert r["measured"] == pytest.approx(169_816 / 466_816)
    assert r["measured"] > 5 * r["eq6"]
    assert r["measured"] == pytest.approx(r["layerwise"], abs=1e-5)


def test_a_full_precision_member_packs_to_its_float_size():
    r = overhead.storage_report(models.mnist_conv())
    assert r["packed_bytes"] == r["float_bytes"] and r["measured"] == r["eq6"] == 1.0


def test_layer_macs_by_hand():
    rows = overhead.layer_macs(models.mnist_conv(wbits=2, abits=4))
    # conv1 14*14 outputs * 8*8*1*64; conv2 5*5 * 6*6*64*128; conv3 1*1 * 5*5*128*128; FC 128*10
    assert [r["macs"] for r in rows] == [802_816, 7_372_800, 409_600, 1_280]
    t = overhead.layerwise_time(models.mnist_conv(wbits=2, abits=4))
    assert t == pytest.approx((8_585_216 * 4 / 32 + 1_280) / 8_586_496)
