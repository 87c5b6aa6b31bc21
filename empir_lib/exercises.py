"""Checks for the book's exercises: each tells a student whether an answer is right.

Every check computes the true answer with the library itself (``quantize``,
``zoo``), compares, prints one verdict line starting with a tick or a cross,
and returns ``True`` or ``False``.  A wrong answer never raises: in a
classroom the notebook must keep running so the student can try again; the
verdict says what was expected where that teaches something (a wrong shape, a
fraction instead of percentage points) and gives a counter-example for a
wrong function.

Chapters call them as ``ok = check_quantizer(my_fn)``: the assignment keeps
the returned bool out of the cell's output (a trailing semicolon would too in
JupyterLab, but not under nbval, which runs cells without history and so
ignores it), and the printed verdict stays.
"""
from __future__ import annotations

import math

import numpy as np

from . import quantize, zoo

OK, NO = "\u2713", "\u2717"  # tick, cross


def _verdict(ok: bool, message: str) -> bool:
    print(f"{OK if ok else NO} {message}")
    return ok


def _as_float_array(answer, what: str):
    """The answer as a 1-D float array, or a message saying why it is not one."""
    try:
        arr = np.asarray(answer, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None, f"{what} should be a list of numbers; got {answer!r}."
    if not np.all(np.isfinite(arr)):
        return None, f"{what} contains NaN or Inf: {answer!r}."
    return arr, ""


# --- chapter 3: DoReFa quantisation (paper Eq. 5) -------------------------------------


def quantizer_inputs(bits: int, n_random: int = 2000, seed: int = 0) -> np.ndarray:
    """Test inputs in [0, 1] for a k-bit quantiser: a grid, random draws, both ends.

    Inputs whose ``x * (2^k - 1)`` lies within 1e-4 of a half-integer are
    dropped: there, float32 against float64 arithmetic alone can flip the
    rounding, and a correct student answer would be rejected for it.
    """
    n = 2**bits - 1
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.linspace(0, 1, 4 * n + 3), rng.uniform(0, 1, n_random),
                        np.arange(n + 1) / n]).astype(np.float32)
    frac = (x.astype(np.float64) * n) % 1.0
    return x[np.abs(frac - 0.5) > 1e-4]


def check_quantizer(student_fn, bits=range(1, 9)) -> bool:
    """Compare a student's k-bit quantiser with Eq. 5 (left) for k = 1..8.

    ``student_fn(x, k)`` takes a float32 NumPy array in [0, 1] and an int and
    returns the quantised array, ``round((2^k - 1) x) / (2^k - 1)``.  The
    reference is :func:`empir_lib.quantize.quantize_k`.
    """
    total = 0
    for k in bits:
        x = quantizer_inputs(k)
        expected = np.asarray(quantize.quantize_k(x, k), dtype=np.float64)
        try:
            got = np.asarray(student_fn(x.copy(), k), dtype=np.float64)
        except Exception as e:  # the student's code failing is an answer to report, not a crash
            return _verdict(False, f"k={k}: your function raised {type(e).__name__}: {e}")
        if got.shape != x.shape:
            return _verdict(False, f"k={k}: for an input of shape {x.shape} you returned shape "
                                   f"{got.shape}; return one value per input.")
        bad = np.flatnonzero(~np.isclose(got, expected, rtol=0, atol=1e-5))
        if bad.size:
            i = bad[0]
            return _verdict(False, f"k={k}: wrong on {bad.size} of {x.size} inputs, e.g. x={x[i]:.4f}: "
                                   f"you return {got[i]:.4f}, Eq. 5 gives {expected[i]:.4f} "
                                   f"(one of the {2**k} levels j/{2**k - 1}).")
        total += x.size
    ks = list(bits)
    return _verdict(True, f"correct: your quantiser matches Eq. 5 for k = {ks[0]}..{ks[-1]} "
                          f"on {total} inputs.")


def check_levels(answer, bits: int, kind: str = "weights") -> bool:
    """Check the set of values a ``bits``-bit quantiser can output (any order)."""
    expected = quantize.levels(bits, kind)
    got, why = _as_float_array(answer, "your levels")
    if got is None:
        return _verdict(False, why)
    got = np.unique(np.round(got, 6))
    if got.size != expected.size:
        return _verdict(False, f"a {bits}-bit {kind} quantiser has {expected.size} distinct levels; "
                               f"you listed {got.size}.")
    if not np.allclose(np.sort(got), expected, atol=1e-3):
        return _verdict(False, f"right number of levels ({expected.size}) but not the right values.")
    return _verdict(True, f"correct: the {expected.size} levels of {bits}-bit {kind} are "
                          + ", ".join(f"{v:+.4g}" for v in expected) + ".")


STE_POINTS = (-0.25, 0.4, 0.9, 1.3)


def ste_gradients(x=STE_POINTS, bits: int = 2) -> np.ndarray:
    """d quantize_activations(a) / d a at the points ``x``, from a GradientTape."""
    import tensorflow as tf

    a = tf.constant(np.asarray(x, dtype=np.float32))
    with tf.GradientTape() as tape:
        tape.watch(a)
        y = quantize.quantize_activations(a, bits)
    return np.asarray(tape.gradient(y, a), dtype=np.float64)


def check_ste_gradients(answer, x=STE_POINTS, bits: int = 2) -> bool:
    """Check predicted gradients of the activation quantiser at the points ``x``.

    The truth is what TensorFlow returns through the straight-through
    estimator (paper Section 3; fact sheet section 2), not the true derivative
    of a staircase (which is 0 almost everywhere).
    """
    expected = ste_gradients(x, bits)
    got, why = _as_float_array(answer, "your gradients")
    if got is None:
        return _verdict(False, why)
    if got.size != expected.size:
        return _verdict(False, f"give one gradient per point: {len(x)} points {tuple(x)}, "
                               f"you gave {got.size} values.")
    wrong = [f"a={p}" for p, g, e in zip(x, got, expected) if not math.isclose(g, e, abs_tol=1e-6)]
    if wrong:
        hint = ""
        if np.all(got == 0):
            hint = " A staircase has zero slope almost everywhere, but the STE replaces that slope."
        return _verdict(False, f"wrong at {', '.join(wrong)}.{hint}")
    return _verdict(True, f"correct: the gradients at a = {tuple(x)} are "
                          f"{tuple(float(v) for v in expected)}.")


# --- chapter 1: the zoo --------------------------------------------------------------


def best_lowprecision_member(dataset: str = "mnist", zoo_dir=None) -> tuple[str, float]:
    """(zoo id, clean full-test accuracy) of the most accurate low-precision member."""
    lp = {k: v for k, v in zoo.members(dataset, zoo_dir).items() if (v["wbits"], v["abits"]) != (32, 32)}
    best = max(lp, key=lambda k: lp[k]["test_accuracy"])
    return best, lp[best]["test_accuracy"]


def check_best_member(answer: str, dataset: str = "mnist", zoo_dir=None) -> bool:
    """Check the zoo id of the most accurate low-precision member (ties all count)."""
    entries = zoo.members(dataset, zoo_dir)
    _, acc = best_lowprecision_member(dataset, zoo_dir)
    if answer not in entries:
        return _verdict(False, f"{answer!r} is not a {dataset} zoo member; ids look like "
                               f"'{dataset}-a4w2-s1'.")
    e = entries[answer]
    if (e["wbits"], e["abits"]) == (32, 32):
        return _verdict(False, f"{answer} is full precision; the question asks for a low-precision member.")
    if e["test_accuracy"] < acc:
        return _verdict(False, f"{answer} reaches {e['test_accuracy']:.2%}; another low-precision "
                               f"member does better.")
    return _verdict(True, f"correct: {answer} reaches {acc:.2%} clean accuracy on the full test set.")


def accuracy_gap(dataset: str, wbits: int, abits: int, seed: int = 1, zoo_dir=None) -> float:
    """FP member's clean accuracy minus a LP member's, in percentage points (seed-1 members)."""
    m = zoo.members(dataset, zoo_dir)
    fp, lp = zoo.find(dataset, 32, 32, 1), zoo.find(dataset, wbits, abits, seed)
    return 100.0 * (m[fp]["test_accuracy"] - m[lp]["test_accuracy"])


def check_accuracy_gap(answer, dataset: str = "mnist", wbits: int = 1, abits: int = 1,
                       zoo_dir=None) -> bool:
    """Check the accuracy a LP member loses against the FP member, in percentage points."""
    expected = accuracy_gap(dataset, wbits, abits, zoo_dir=zoo_dir)
    try:
        got = float(answer)
    except (TypeError, ValueError):
        return _verdict(False, f"give one number (percentage points); got {answer!r}.")
    if math.isclose(got, expected, abs_tol=0.01):
        return _verdict(True, f"correct: the a{abits}w{wbits} member is {expected:.2f} points below the "
                              f"FP member.")
    if math.isclose(100 * got, expected, abs_tol=0.01):
        return _verdict(False, "that looks like a fraction; multiply by 100 for percentage points.")
    if math.isclose(-got, expected, abs_tol=0.01):
        return _verdict(False, "right size, wrong sign: give FP accuracy minus low-precision accuracy.")
    return _verdict(False, f"not quite: you gave {got:.2f} points.")


# --- chapter 2: the attacks (paper section 2) ----------------------------------------


def _close_pixels(got, expected, tol=1e-5) -> float:
    """Fraction of pixels that differ by more than ``tol``."""
    return float(np.mean(np.abs(got - expected) > tol))


def fgsm_problem(n: int = 16, eps: float = 0.3):
    """The check's setting for FGSM: the MNIST FP baseline, ``n`` sample images, true labels."""
    from . import data

    model = zoo.load(zoo.find("mnist"))
    x, y = data.load_sample("mnist", n)
    return model, x, y, eps


def reference_fgsm(model, x, y, eps) -> np.ndarray:
    """Eq. 1 as the library computes it (:func:`empir_lib.attacks.fgsm`) on the model's logits."""
    import tensorflow as tf

    from . import attacks

    return attacks.fgsm(lambda v: model(v, training=False), tf.constant(x), tf.constant(y.astype(np.int32)),
                        eps).numpy()


def check_fgsm(student_fn, n: int = 16, eps: float = 0.3) -> bool:
    """Compare a student's FGSM step (Eq. 1) with :func:`empir_lib.attacks.fgsm`.

    ``student_fn(model, x, y, eps)`` takes a Keras model that outputs logits,
    images x (NumPy, NHWC, in [0, 1]), true labels y and eps, and returns the
    adversarial images as a NumPy array.  A handful of pixels may differ
    where the gradient is almost exactly zero (its sign is then float noise),
    so up to 0.1% of pixels may disagree, as in tests/test_attacks.py.
    """
    model, x, y, eps = fgsm_problem(n, eps)
    expected = reference_fgsm(model, x, y, eps)
    try:
        got = np.asarray(student_fn(model, x.copy(), y.copy(), eps), dtype=np.float32)
    except Exception as e:  # the student's code failing is an answer to report, not a crash
        return _verdict(False, f"your function raised {type(e).__name__}: {e}")
    if got.shape != x.shape:
        return _verdict(False, f"for images of shape {x.shape} you returned shape {got.shape}.")
    if _close_pixels(got, expected) <= 1e-3:
        return _verdict(True, f"correct: your FGSM step matches Eq. 1 on {n} images "
                              f"(eps = {eps}, max |x_adv - x| = {np.abs(got - x).max():.3g}).")
    if got.min() < -1e-6 or got.max() > 1 + 1e-6:
        return _verdict(False, f"your images span [{got.min():.3f}, {got.max():.3f}]; clip them to [0, 1].")
    if _close_pixels(got, reference_fgsm(model, x, y, -eps)) <= 1e-3:
        return _verdict(False, "you stepped *down* the loss; an attack climbs it: x + eps * sign(grad).")
    if np.abs(got - x).max() < 0.5 * eps:
        return _verdict(False, f"your largest change is {np.abs(got - x).max():.3g}, far below eps = {eps}: "
                               "step by eps times the *sign* of the gradient, not the gradient itself.")
    return _verdict(False, f"{_close_pixels(got, expected):.1%} of the pixels differ from Eq. 1.")


def linf_norms(x, x_adv) -> np.ndarray:
    """Per-image L-infinity norm of the perturbation, as the library's evaluation records it."""
    from . import evaluate

    return evaluate._norms(np.asarray(x, np.float32), np.asarray(x_adv, np.float32))[1]


def norm_problem(n: int = 6, seed: int = 0):
    """Images and perturbed copies with a different perturbation size per image."""
    from . import data

    x, _ = data.load_sample("mnist", n)
    rng = np.random.default_rng(seed)
    sizes = rng.uniform(0.05, 0.3, n).astype(np.float32)
    # A negative extreme on purpose: a max without abs() then gives the wrong answer.
    delta = rng.uniform(-1, 0.5, x.shape).astype(np.float32) * sizes[:, None, None, None]
    return x, x + delta


def check_linf_norm(student_fn) -> bool:
    """Check ``student_fn(x, x_adv)`` -> one L-infinity norm max|x_adv - x| per image."""
    x, xa = norm_problem()
    expected = linf_norms(x, xa)
    try:
        got = np.asarray(student_fn(x.copy(), xa.copy()), dtype=np.float64).reshape(-1)
    except Exception as e:
        return _verdict(False, f"your function raised {type(e).__name__}: {e}")
    if got.size == 1 and len(x) > 1:
        return _verdict(False, f"you returned one number for {len(x)} images; give one norm per image.")
    if got.size != len(x):
        return _verdict(False, f"{len(x)} images but {got.size} norms; reduce over the pixels of each image.")
    if np.allclose(got, expected, atol=1e-6):
        return _verdict(True, "correct: the L-inf norms are " + ", ".join(f"{v:.4f}" for v in expected) + ".")
    d = (xa - x).reshape(len(x), -1)
    if np.allclose(got, np.sqrt((d ** 2).sum(1)), atol=1e-5):
        return _verdict(False, "those are L2 norms (square root of the sum of squares); L-inf is the largest |change|.")
    if np.allclose(got, d.max(1), atol=1e-6):
        return _verdict(False, "take the absolute value first: a pixel pushed down by 0.3 counts as much as one pushed up.")
    return _verdict(False, "not the per-image max |x_adv - x|.")


def gradient_counts(dataset: str = "mnist") -> dict:
    """Gradient evaluations per image each attack needs at most under Table 1's presets."""
    from . import attacks

    p = attacks.PRESETS[dataset]
    return {"fgsm": 1, "bim": p["bim"]["nb_iter"], "pgd": p["pgd"]["nb_iter"],
            "cw": p["cw"]["binary_search_steps"] * p["cw"]["max_iterations"]}


def check_gradient_counts(answer: dict, dataset: str = "mnist") -> bool:
    """Check the number of input gradients per image each attack computes (at most) on ``dataset``."""
    expected = gradient_counts(dataset)
    if not isinstance(answer, dict) or set(answer) != set(expected):
        return _verdict(False, f"give a dict with the keys {sorted(expected)}; got {answer!r}.")
    wrong = [k for k in expected if answer[k] != expected[k]]
    if wrong:
        return _verdict(False, f"not right for {', '.join(wrong)}; read attacks.PRESETS[{dataset!r}].")
    return _verdict(True, "correct: " + ", ".join(f"{k.upper()} {v}" for k, v in expected.items())
                    + f" gradients per image on {dataset}.")


# --- chapter 6: hardware overheads (paper Eq. 6) ---------------------------------------


def check_overheads(answer: dict, precisions, ops_per_sec: str = "proportional") -> bool:
    """Check Eq. 6's time and storage for an ensemble given as (wbits, abits) per member."""
    from . import overhead

    expected = overhead.ensemble_overheads(precisions, ops_per_sec)
    if not isinstance(answer, dict) or set(answer) != {"time", "storage"}:
        return _verdict(False, f"give a dict {{'time': ..., 'storage': ...}}; got {answer!r}.")
    try:
        got = {k: float(v) for k, v in answer.items()}
    except (TypeError, ValueError):
        return _verdict(False, f"both values should be numbers; got {answer!r}.")
    m, lp = overhead.split_members(precisions)
    hints = []
    for key in ("time", "storage"):
        if math.isclose(got[key], expected[key], abs_tol=1e-3):
            continue
        if m and math.isclose(got[key], expected[key] - m, abs_tol=1e-3):
            hints.append(f"{key}: that is only the LP members' part; Eq. 6 adds M = {m} for the FP members")
        elif key == "time" and math.isclose(got[key], overhead.eq6_time(m, [w for w, _ in lp], ops_per_sec),
                                            abs_tol=1e-3):
            hints.append("time: you used the weight bits; an operation needs the wider of wbits and abits")
        elif key == "storage" and math.isclose(
                got[key], overhead.eq6_storage(m, [max(w, a) for w, a in lp]), abs_tol=1e-3):
            hints.append("storage: only weights are stored, so count wbits, not the activations")
        else:
            hints.append(f"{key}: not quite (you gave {got[key]:.4g})")
    if hints:
        return _verdict(False, "; ".join(hints) + ".")
    return _verdict(True, f"correct: time {expected['time']:.4g}x and storage {expected['storage']:.4g}x "
                          "one FP model.")


def check_pack(student_fn, bits=(1, 2, 3, 4), count: int = 1001) -> bool:
    """Check ``student_fn(codes, k)`` -> uint8 array packing k-bit codes as :func:`overhead.pack_codes`.

    The layout is the library's: code i occupies bits i*k .. i*k+k-1 of the
    stream, least significant bit first, and bytes fill from their lowest bit
    (``np.packbits(..., bitorder='little')``).  The check unpacks your bytes
    with :func:`overhead.unpack_codes` and compares the codes.
    """
    from . import overhead

    rng = np.random.default_rng(1)
    for k in bits:
        codes = rng.integers(0, 2**k, count)
        try:
            got = np.asarray(student_fn(codes.copy(), k))
        except Exception as e:
            return _verdict(False, f"k={k}: your function raised {type(e).__name__}: {e}")
        want_bytes = math.ceil(count * k / 8)
        if got.dtype != np.uint8:
            return _verdict(False, f"k={k}: return bytes as a uint8 array; you returned {got.dtype}.")
        if got.size != want_bytes:
            hint = " Each code should take k bits, not a whole byte." if got.size == count else ""
            return _verdict(False, f"k={k}: {count} {k}-bit codes fill {want_bytes} bytes; you returned "
                                   f"{got.size}.{hint}")
        back = overhead.unpack_codes(got.reshape(-1), k, count)
        if not np.array_equal(back, codes):
            return _verdict(False, f"k={k}: right size, but {np.mean(back != codes):.0%} of the codes unpack "
                                   "wrongly; put each code's least significant bit first and use "
                                   "np.packbits(..., bitorder='little').")
    return _verdict(True, f"correct: {count} codes of k = {', '.join(map(str, bits))} bits pack into "
                          f"ceil({count} k / 8) bytes and unpack exactly.")
