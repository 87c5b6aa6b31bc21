"""Exercise checks, chapter 9: ImageNet scale."""
from __future__ import annotations

import math
from collections.abc import Callable

from ...core import memo, settings
from ...core.settings import FULL_PRECISION
from ...hardware import overhead
from ...nets import models
from .verdict import verdict


def eps_in_255ths(dataset: str = "tiny-imagenet") -> float:
    """The FGSM eps of ``settings.ATTACK_PRESETS[dataset]`` in units of 1/255 of the [0, 1] pixel range."""
    return 255 * settings.ATTACK_PRESETS[dataset]["fgsm"]["eps"]


def check_eps_in_255ths(answer: object, normalised: float = 0.1, std: float = 0.226) -> bool:
    """Check the original's ImageNet eps (``normalised`` units, per-channel ``std``) converted to x/255.

    The reference is the Tiny ImageNet preset in :data:`empir_lib.core.settings.ATTACK_PRESETS`,
    which makes the same conversion.
    """
    expected = eps_in_255ths("tiny-imagenet")
    try:
        got = float(answer)
    except (TypeError, ValueError):
        return verdict(False, f"give one number, eps in units of 1/255 of the pixel range; got {answer!r}.")
    if math.isclose(got, expected, abs_tol=0.05):
        return verdict(True, f"correct: {normalised} normalised units are {normalised} x {std} = "
                              f"{normalised * std:.4f} of the [0, 1] range, about {expected:.2f}/255, "
                              "the eps of settings.ATTACK_PRESETS['tiny-imagenet'].")
    if math.isclose(got, expected / 255, rel_tol=1e-2):
        return verdict(False, "that is eps on the [0, 1] scale; multiply by 255 for units of 1/255.")
    if math.isclose(got, 255 * normalised, rel_tol=1e-2):
        return verdict(False, "that reads the normalised units as pixels. One normalised unit is one "
                               "standard deviation of the pixels, which is much less than the whole range.")
    if math.isclose(got, 255 * normalised / std, rel_tol=1e-2):
        return verdict(False, "you divided by the standard deviation. Normalising divides pixels by it, "
                               "so going back to pixels multiplies.")
    return verdict(False, f"not quite: you gave {got:.4g}.")


# (architecture, wbits, abits, keyword arguments): networks whose layer-wise storage the check compares.
STORAGE_CASES = (("mnist_conv", 2, 4, ()), ("cifar_conv", 1, 1, ()), ("cifar_conv", 4, 2, ()),
                 ("alexnet_tiny", 2, 2, (("width", 0.25),)), ("alexnet_tiny", 4, 4, (("width", 0.25),)))


def _storage_case(arch: str, wbits: int, abits: int, kwargs: tuple) -> tuple[float, int, float]:
    """(float32 share f, wbits k, layer-wise storage / float32 storage) of one untrained member."""
    model = models.build(arch, wbits, abits, **dict(kwargs))
    return (overhead.fp_share(model), overhead.member_wbits(model),
            overhead.predicted_bytes(model) / overhead.float_bytes(model))


def storage_cases() -> list[tuple[float, int, float]]:
    """:func:`_storage_case` for every entry of ``STORAGE_CASES`` (built once per session)."""
    return [memo.get("ch09.storage", case, lambda case=case: _storage_case(*case), len(STORAGE_CASES))
            for case in STORAGE_CASES]


def check_member_storage(student_fn: Callable) -> bool:
    """Check ``student_fn(f, k)`` -> one LP member's storage as a fraction of the same network in float32.

    A fraction ``f`` of the member's weights stays float32 (its FP layers,
    biases, batch norm) and the rest is stored at ``k`` bits.  The reference
    is :func:`overhead.predicted_bytes` over :func:`overhead.float_bytes` of
    real (untrained) networks: MNISTconv, CIFARconv and the Tiny ImageNet
    AlexNet, which chapter 6 shows equal the bit-packed measurement.
    """
    for (arch, wbits, abits, _), (f, k, expected) in zip(STORAGE_CASES, storage_cases()):
        try:
            got = float(student_fn(f, k))
        except Exception as e:  # the student's code failing is an answer to report, not a crash
            return verdict(False, f"your function raised {type(e).__name__}: {e}")
        if math.isclose(got, expected, rel_tol=1e-6):
            continue
        where = f"{arch} a{abits}w{wbits} (f = {f:.4f}, k = {k})"
        if math.isclose(got, k / FULL_PRECISION, rel_tol=1e-6):
            return verdict(False, f"{where}: that is Eq. 6's k/32, as if every weight were stored at k bits; "
                                   "the fraction f stays float32, at 32 bits.")
        if math.isclose(got, f * k / FULL_PRECISION + (1 - f), rel_tol=1e-6):
            return verdict(False, f"{where}: f and 1 - f are swapped: f is the share kept at 32 bits.")
        if math.isclose(got, 100 * expected, rel_tol=1e-6):
            return verdict(False, "that looks like a percentage; return a fraction of the float32 network.")
        if math.isclose(got, 1 + expected, rel_tol=1e-6):
            return verdict(False, f"{where}: that adds a whole FP model; return this member's storage only.")
        return verdict(False, f"{where}: you return {got:.4g}, expected {expected:.4g}.")
    f, k, expected = storage_cases()[3]
    return verdict(True, f"correct: e.g. the Tiny ImageNet AlexNet a2w2 at width 0.25 keeps {f:.1%} of its "
                          f"weights in float32 and needs {expected:.3f} of its float32 size, not Eq. 6's "
                          f"{k / FULL_PRECISION:.4f}.")
