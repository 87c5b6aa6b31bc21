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
    got, verdict = _points_verdict(answer, expected,
                                   f"correct: the a{abits}w{wbits} member is {expected:.2f} points below the "
                                   "FP member.", "give FP accuracy minus low-precision accuracy.")
    return verdict if verdict is not None else _verdict(False, f"not quite: you gave {got:.2f} points.")


def _points_verdict(answer, expected: float, correct: str, sign_hint: str):
    """(the answer as a float, a verdict) for a difference in percentage points.

    The verdict is None when the answer is a number but none of the usual
    slips (a fraction, the wrong sign) explains it: the caller says more.
    """
    try:
        got = float(answer)
    except (TypeError, ValueError):
        return None, _verdict(False, f"give one number (percentage points); got {answer!r}.")
    if math.isclose(got, expected, abs_tol=0.01):
        return got, _verdict(True, correct)
    if math.isclose(100 * got, expected, abs_tol=0.01):
        return got, _verdict(False, "that looks like a fraction; multiply by 100 for percentage points.")
    if math.isclose(-got, expected, abs_tol=0.01):
        return got, _verdict(False, "right size, wrong sign: " + sign_hint)
    return got, None


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


# --- chapter 4: low-precision members (Figures 1 and 3a) ------------------------------


def pareto_front(clean: dict, adv: dict) -> list[str]:
    """The members no other member beats on both axes of Figure 3a (clean and adversarial accuracy).

    A member is dominated when another has at least its clean *and* its
    adversarial accuracy and more of one of them.  Returns the others, sorted.
    """
    names = sorted(set(clean) & set(adv))

    def dominated(m):
        return any(clean[o] >= clean[m] and adv[o] >= adv[m] and (clean[o] > clean[m] or adv[o] > adv[m])
                   for o in names if o != m)

    return [m for m in names if not dominated(m)]


def check_pareto(answer, clean: dict, adv: dict) -> bool:
    """Check the set of undominated members (any order) for the accuracies ``clean`` and ``adv``."""
    expected = pareto_front(clean, adv)
    if isinstance(answer, str) or not hasattr(answer, "__iter__"):
        return _verdict(False, f"give a list of member ids, e.g. [{expected[0]!r}, ...]; got {answer!r}.")
    got = set(answer)
    unknown = sorted(map(str, got - (set(clean) & set(adv))))
    if unknown:
        return _verdict(False, f"{', '.join(unknown)}: not among the members plotted.")
    extra = sorted(got - set(expected))
    if extra:
        m = extra[0]
        better = next(o for o in sorted(set(clean) & set(adv)) if o != m and clean[o] >= clean[m]
                      and adv[o] >= adv[m] and (clean[o] > clean[m] or adv[o] > adv[m]))
        return _verdict(False, f"{m} is dominated: {better} has clean {clean[better]:.1%} >= {clean[m]:.1%} "
                               f"and adversarial {adv[better]:.1%} >= {adv[m]:.1%}.")
    missing = sorted(set(expected) - got)
    if missing:
        return _verdict(False, f"{len(missing)} undominated member(s) missing; no member beats "
                               f"{missing[0]} on both axes.")
    return _verdict(True, f"correct: {len(expected)} points are undominated: {', '.join(expected)}.")


def flippable_fraction(x, bits: int, eps: float) -> float:
    """Fraction of pixels whose ``bits``-bit quantised value some perturbation in [-eps, eps] changes.

    A low-precision MNIST/CIFAR member quantises its input image (fact sheet
    section 2), so a pixel moved by an L-inf attack only reaches the network
    if it crosses a rounding threshold.  The quantiser is monotone, so trying
    the two ends of the interval (clipped to [0, 1]) is enough.
    """
    x = np.asarray(x, dtype=np.float32)
    q = lambda v: np.asarray(quantize.quantize_activations(v, bits))  # noqa: E731
    up, down = q(np.clip(x + eps, 0, 1)), q(np.clip(x - eps, 0, 1))
    here = q(x)
    return float(np.mean((up != here) | (down != here)))


def check_flippable_fraction(answer, x, bits: int = 1, eps: float = 0.3) -> bool:
    """Check the fraction of pixels of ``x`` an eps-bounded attack can change after ``bits``-bit quantisation."""
    expected = flippable_fraction(x, bits, eps)
    try:
        got = float(answer)
    except (TypeError, ValueError):
        return _verdict(False, f"give one number, a fraction between 0 and 1; got {answer!r}.")
    if math.isclose(got, expected, abs_tol=1e-3):
        return _verdict(True, f"correct: {expected:.1%} of the pixels can cross a {bits}-bit rounding threshold "
                              f"with |delta| <= {eps}; the rest of the perturbation never reaches conv1.")
    if math.isclose(got, 100 * expected, abs_tol=0.1):
        return _verdict(False, "that looks like a percentage; give a fraction between 0 and 1.")
    if math.isclose(got, 1 - expected, abs_tol=1e-3):
        return _verdict(False, "that is the fraction that can NOT change; give the fraction that can.")
    return _verdict(False, f"not quite: you gave {got:.4f}. A pixel changes only if x + delta lands on "
                           f"the other side of a rounding threshold, for some |delta| <= {eps}.")


# --- chapter 5: ensembling rules (paper section 3.2) -------------------------------


def reference_vote(votes, fp) -> np.ndarray:
    """Max voting with the FP-first tie-break, computed by :func:`empir_lib.ensemble.vote`.

    ``votes`` is an int array (members, images) of each member's class and
    ``fp`` says which members are full precision.  Each vote becomes a
    one-hot logit vector, so the library's vote sees exactly these classes.
    """
    import types

    from . import ensemble

    votes = np.asarray(votes, dtype=np.int64)
    order = ensemble.priority(types.SimpleNamespace(fp=tuple(bool(f) for f in fp)))
    logits = np.eye(int(votes.max()) + 1, dtype=np.float32)[votes]
    return np.asarray(ensemble.vote(logits, order)[0], dtype=np.int64)


def vote_cases(seed: int = 0) -> list[tuple[np.ndarray, tuple]]:
    """Test cases for a vote: 2 to 5 members, FP members anywhere, few classes so that ties are common."""
    rng = np.random.default_rng(seed)
    cases = [(np.array([[0, 1, 2], [1, 1, 0], [2, 0, 1]]).T, (False, False, True)),  # EMPIR's three members
             (np.array([[3], [5], [7]]), (True, False, False)),                       # FP first in the list
             (np.array([[1], [2], [2], [1]]), (False, True, False, False)),           # 2-2 tie, FP decides
             (np.array([[4], [6], [8]]), (False, False, False))]                      # no FP: first member
    for k in (2, 3, 4, 5):
        for _ in range(6):
            fp = tuple(bool(b) for b in rng.integers(0, 2, k))
            cases.append((rng.integers(0, 4, (k, 40)), fp))
    return cases


def check_vote(student_fn) -> bool:
    """Compare a student's max vote with the library's (FP-first tie-break) on many small ensembles.

    ``student_fn(votes, fp)`` takes an int array (members, images) of the
    members' classes and a tuple of bools (is member i full precision?) and
    returns the ensemble's class per image.
    """
    cases = vote_cases()
    for votes, fp in cases:
        expected = reference_vote(votes, fp)
        try:
            got = np.asarray(student_fn(votes.copy(), fp)).reshape(-1)
        except Exception as e:  # the student's code failing is an answer to report, not a crash
            return _verdict(False, f"your function raised {type(e).__name__}: {e}")
        if got.shape != expected.shape:
            return _verdict(False, f"for {votes.shape[1]} images you returned {got.size} classes; "
                                   f"return one class per image (column).")
        bad = np.flatnonzero(got != expected)
        if bad.size:
            i = bad[0]
            return _verdict(False, f"votes {votes[:, i].tolist()} with full-precision flags {list(fp)}: "
                                   f"you return {got[i]}, the rule gives {expected[i]}.")
    return _verdict(True, f"correct: your vote matches ensemble.vote on {sum(v.shape[1] for v, _ in cases)} "
                          f"images from {len(cases)} ensembles of 2 to 5 members.")


def rule_predictions(probs, fp=(False, False, True)) -> dict:
    """The classes the vote and the average pick for members' probabilities ``probs`` (members, images, classes)."""
    import types

    from . import ensemble

    p = np.asarray(probs, dtype=np.float32)
    order = ensemble.priority(types.SimpleNamespace(fp=tuple(bool(f) for f in fp)))
    # log p are logits whose softmax is p again, so combine() sees these very probabilities
    logits = np.log(np.maximum(p, 1e-30))
    return {rule: np.asarray(ensemble.combine(logits, order, rule)["pred"]) for rule in ("vote", "average")}


def check_rules_disagree(probs, fp=(False, False, True)) -> bool:
    """Check that the members' probabilities ``probs`` (members, classes) make voting and averaging disagree."""
    try:
        p = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError):
        return _verdict(False, f"give one row of class probabilities per member; got {probs!r}.")
    if p.ndim != 2 or p.shape[0] != len(fp) or p.shape[1] < 2:
        return _verdict(False, f"give a ({len(fp)} members x classes) array, one probability vector per "
                               f"member; got shape {p.shape}.")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or not np.allclose(p.sum(1), 1, atol=1e-3):
        return _verdict(False, "every row must be a probability vector: non-negative, summing to 1.")
    preds = rule_predictions(p[:, None, :], fp)
    v, a = int(preds["vote"][0]), int(preds["average"][0])
    if v == a:
        return _verdict(False, f"both rules pick class {v}. Try two members that narrowly prefer one class "
                               f"and one member that is very sure of another.")
    return _verdict(True, f"correct: the vote picks class {v}, the average picks class {a}.")


def prob_as_logits_loss_range(num_classes: int = 10) -> tuple[float, float]:
    """Smallest and largest softmax cross-entropy when *probabilities* are fed in as logits (fact sheet §0.4).

    L(p) = logsumexp(p) - p_y is convex in p, so over the probability simplex
    its maximum lies at a vertex; its minimum does too, at p = e_y (every
    direction into the simplex from there goes uphill, since
    softmax(e_y)_y < 1).  So the vertices, computed here with TensorFlow's
    own loss, give both ends.
    """
    import tensorflow as tf

    vertices = np.eye(num_classes, dtype=np.float32)
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=np.zeros(num_classes, np.int32), logits=vertices)
    loss = np.asarray(loss, dtype=np.float64)
    return float(loss.min()), float(loss.max())


def check_prob_as_logits_range(answer, num_classes: int = 10) -> bool:
    """Check (smallest, largest) loss of the original's FGSM/PGD objective for ``num_classes`` classes."""
    lo, hi = prob_as_logits_loss_range(num_classes)
    got, why = _as_float_array(answer, "your (smallest, largest) pair")
    if got is None:
        return _verdict(False, why)
    if got.size != 2:
        return _verdict(False, f"give two numbers, (smallest, largest); you gave {got.size}.")
    g_lo, g_hi = sorted(got)
    if math.isclose(g_lo, lo, abs_tol=1e-3) and math.isclose(g_hi, hi, abs_tol=1e-3):
        return _verdict(True, f"correct: the loss stays in [{lo:.4f}, {hi:.4f}], a band exactly 1 wide, "
                              f"however sure or wrong the ensemble is.")
    if math.isclose(g_lo, 0, abs_tol=1e-3):
        return _verdict(False, "0 is the minimum of cross-entropy on real logits (or log-probabilities); "
                               "here the 'logits' are probabilities, between 0 and 1.")
    if math.isclose(g_hi - g_lo, 1, abs_tol=1e-3):
        return _verdict(False, "the width is right (1) but the ends are not.")
    return _verdict(False, f"not quite: you gave ({g_lo:.4f}, {g_hi:.4f}). Evaluate the loss at p = e_y "
                           f"and at p = e_j for j != y.")


# --- chapter 7: the result tables -----------------------------------------------------


def average_gain(dataset: str = "mnist", root=None):
    """Our EMPIR (paper protocol) average adversarial accuracy minus our baseline's, in points.

    Read from the Table 2 results files (``results.table2``); ``None`` while
    any of the eight files is missing.
    """
    from . import results

    t = results.table2(dataset, root)
    hi, lo = t["EMPIR, paper protocol"]["average"], t["baseline (FP)"]["average"]
    return None if hi is None or lo is None else hi - lo


def check_average_gain(answer, dataset: str = "mnist", root=None) -> bool:
    """Check the gain in average adversarial accuracy (EMPIR paper protocol minus baseline), in points."""
    expected = average_gain(dataset, root)
    if expected is None:
        return _verdict(False, f"the {dataset} Table 2 results are not all there yet, so there is nothing to "
                               f"check against; produce them with 'empir reproduce {dataset} --only table2/'.")
    got, verdict = _points_verdict(answer, expected,
                                   f"correct: on {dataset}, EMPIR's average adversarial accuracy is "
                                   f"{expected:.2f} points above the baseline's (paper protocol).",
                                   "give EMPIR's average minus the baseline's.")
    if verdict is not None:
        return verdict
    from . import results

    paper = results.paper_table2(dataset)
    if math.isclose(got, paper["empir"]["average"] - paper["baseline"]["average"], abs_tol=0.01):
        return _verdict(False, "that is the paper's gain; the question asks for ours, from results.table2.")
    return _verdict(False, f"not quite: you gave {got:.2f} points. The average is the mean of the four "
                           "attack columns (CW, FGSM, BIM, PGD), not including the clean column.")


HALFWIDTH_CASES = ((0.5, 100), (0.15, 200), (0.7341, 10000), (0.9873, 1000), (0.02, 500), (0.0, 500))


def binomial_halfwidth(p: float, n: int) -> float:
    """Half-width of the normal-approximation 95% interval of an accuracy p measured on n images."""
    return 1.96 * math.sqrt(p * (1 - p) / n)


def check_halfwidth(student_fn) -> bool:
    """Check ``student_fn(p, n)`` -> the 95% half-width 1.96 sqrt(p (1 - p) / n), as a fraction."""
    for p, n in HALFWIDTH_CASES:
        expected = binomial_halfwidth(p, n)
        try:
            got = float(student_fn(p, n))
        except Exception as e:  # the student's code failing is an answer to report, not a crash
            return _verdict(False, f"your function raised {type(e).__name__}: {e}")
        if math.isclose(got, expected, rel_tol=1e-3, abs_tol=1e-9):
            continue
        se = math.sqrt(p * (1 - p) / n)
        if math.isclose(got, se, rel_tol=1e-3):
            return _verdict(False, f"p={p}, n={n}: that is the standard error; a 95% interval is 1.96 of them "
                                   "on each side.")
        if math.isclose(got, 100 * expected, rel_tol=1e-3):
            return _verdict(False, "that looks like percentage points; return a fraction, like p.")
        if math.isclose(got, 1.96 * p * (1 - p) / n, rel_tol=1e-3):
            return _verdict(False, f"p={p}, n={n}: take the square root of the variance p (1 - p) / n.")
        return _verdict(False, f"p={p}, n={n}: you return {got:.5g}, expected {expected:.5g}.")
    return _verdict(True, "correct: e.g. 200 images at 15% give \u00b1"
                          f"{100 * binomial_halfwidth(0.15, 200):.1f} points, 10,000 images at 73% give "
                          f"\u00b1{100 * binomial_halfwidth(0.7341, 10000):.1f}.")


# --- chapter 8: adaptive attacks ------------------------------------------------------------


def _stub_ensemble(k: int):
    """An ensemble whose k "members" read their logits off a stacked (k, batch, classes) input.

    It lets a check run the library's own objectives (``attacks.score_function``)
    on given member logits, without any network.
    """
    from . import ensemble

    members = tuple((lambda x, training=False, i=i: x[i]) for i in range(k))
    return ensemble.Ensemble(members, tuple(f"m{i}" for i in range(k)), (False,) * (k - 1) + (True,), "vote")


def mean_prob_problem(k: int = 3, batch: int = 64, classes: int = 10, seed: int = 0) -> np.ndarray:
    """Member logits (k, batch, classes) with confident members, as trained networks are."""
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 1, (k, batch, classes)) * rng.uniform(1, 40, (k, batch, 1))).astype(np.float32)


def objective_scores(logits, objective: str) -> np.ndarray:
    """The library's scores (``attacks.score_function``) for member logits (k, batch, classes)."""
    import tensorflow as tf

    from . import attacks

    z = tf.constant(np.asarray(logits, np.float32))
    return np.asarray(attacks.score_function(_stub_ensemble(int(z.shape[0])), objective)(z), np.float64)


def _softmax(s):
    s = np.asarray(s, np.float64)
    m = np.max(s, -1, keepdims=True)
    e = np.exp(s - m)
    return e / e.sum(-1, keepdims=True)


def check_mean_prob_scores(student_fn) -> bool:
    """Check ``student_fn(z)`` -> scores whose softmax is the members' mean probability.

    ``z`` is a float32 NumPy array (members, batch, classes) of member
    logits.  Cross-entropy on the scores is then the negative log-likelihood
    of the mixture, the adaptive ``mean_prob`` objective; scores may differ
    from the library's by a constant per image (softmax ignores it).
    """
    z = mean_prob_problem()
    target = _softmax(objective_scores(z, "mean_prob"))
    try:
        got = np.asarray(student_fn(z.copy()), dtype=np.float64)
    except Exception as e:  # the student's code failing is an answer to report, not a crash
        return _verdict(False, f"your function raised {type(e).__name__}: {e}")
    if got.shape != target.shape:
        return _verdict(False, f"for logits of shape {z.shape} return one score per image and class, shape "
                               f"{target.shape}; you returned {got.shape}.")
    if np.isnan(got).any() or np.isposinf(got).any():
        return _verdict(False, "your scores contain NaN or +inf; work with log_softmax and logsumexp.")
    if np.isneginf(got).all(-1).any():
        return _verdict(False, "for some images every score is -inf (log of underflowed probabilities): "
                               "average in log space with logsumexp over log_softmax(z).")
    probs = _softmax(got)
    if np.allclose(probs, target, atol=1e-5):
        return _verdict(True, "correct: softmax of your scores is the members' mean probability, so "
                              "cross-entropy on them is the mixture's negative log-likelihood.")
    if np.allclose(probs, _softmax(objective_scores(z, "original_attack_prob_as_logits")), atol=1e-5) or \
            np.allclose(probs, _softmax(_softmax(z).mean(0)), atol=1e-5):
        return _verdict(False, "you return the probabilities themselves; fed to softmax cross-entropy they "
                               "act as logits (the original code's mistake). Return their log.")
    if np.allclose(probs, _softmax(objective_scores(z, "mean_logits")), atol=1e-5):
        return _verdict(False, "that is the mean of the logits (a geometric mean of the probabilities), "
                               "another adaptive objective; this one averages the probabilities.")
    return _verdict(False, f"softmax of your scores differs from the mean probability by up to "
                           f"{np.abs(probs - target).max():.3g}.")


def worst_case_problem(seed: int = 0) -> dict:
    """Per-image "still correct" flags of four attacks on 200 images, deliberately not nested."""
    rng = np.random.default_rng(seed)
    rates = {"paper": 0.7, "mean_prob": 0.5, "mean_logits": 0.4, "member:2": 0.45}
    return {k: rng.random(200) < r for k, r in rates.items()}


def worst_case_accuracy(correct: dict) -> float:
    """Accuracy under the per-image worst case: an image counts only if every attack left it correct."""
    flags = np.array([np.asarray(v, bool) for v in correct.values()])
    return float(flags.all(0).mean())


def check_worst_case(student_fn) -> bool:
    """Check ``student_fn(correct)`` -> worst-case accuracy over attacks, per image.

    ``correct`` maps an attack (objective) name to a boolean NumPy array, one
    flag per image: still classified correctly after that attack?
    """
    correct = worst_case_problem()
    expected = worst_case_accuracy(correct)
    try:
        got = float(student_fn({k: v.copy() for k, v in correct.items()}))
    except Exception as e:  # the student's code failing is an answer to report, not a crash
        return _verdict(False, f"your function raised {type(e).__name__}: {e}")
    if math.isclose(got, expected, abs_tol=1e-9):
        best = min(float(np.mean(v)) for v in correct.values())
        return _verdict(True, f"correct: {expected:.1%} of the images survive every attack, below the "
                              f"{best:.1%} of the strongest single attack.")
    if math.isclose(got, 100 * expected, abs_tol=1e-6):
        return _verdict(False, "that looks like a percentage; return a fraction, like np.mean does.")
    if math.isclose(got, min(float(np.mean(v)) for v in correct.values()), abs_tol=1e-9):
        return _verdict(False, "that is the strongest single attack. Different attacks fool different images: "
                               "an image is robust only if it survives all of them.")
    if math.isclose(got, float(np.array(list(correct.values())).any(0).mean()), abs_tol=1e-9):
        return _verdict(False, "you count an image as robust if it survives *any* attack; the attacker "
                               "picks the attack that works, so it must survive *all*.")
    return _verdict(False, f"not quite: you gave {got:.4f}.")


# --- chapter 9: ImageNet scale -----------------------------------------------------------------


def eps_in_255ths(dataset: str = "tiny-imagenet") -> float:
    """The FGSM eps of ``attacks.PRESETS[dataset]`` in units of 1/255 of the [0, 1] pixel range."""
    from . import attacks

    return 255 * attacks.PRESETS[dataset]["fgsm"]["eps"]


def check_eps_in_255ths(answer, normalised: float = 0.1, std: float = 0.226) -> bool:
    """Check the original's ImageNet eps (``normalised`` units, per-channel ``std``) converted to x/255.

    The reference is the Tiny ImageNet preset in :mod:`empir_lib.attacks`,
    which makes the same conversion.
    """
    expected = eps_in_255ths("tiny-imagenet")
    try:
        got = float(answer)
    except (TypeError, ValueError):
        return _verdict(False, f"give one number, eps in units of 1/255 of the pixel range; got {answer!r}.")
    if math.isclose(got, expected, abs_tol=0.05):
        return _verdict(True, f"correct: {normalised} normalised units are {normalised} x {std} = "
                              f"{normalised * std:.4f} of the [0, 1] range, about {expected:.2f}/255, "
                              "the eps of attacks.PRESETS['tiny-imagenet'].")
    if math.isclose(got, expected / 255, rel_tol=1e-2):
        return _verdict(False, "that is eps on the [0, 1] scale; multiply by 255 for units of 1/255.")
    if math.isclose(got, 255 * normalised, rel_tol=1e-2):
        return _verdict(False, "that reads the normalised units as pixels. One normalised unit is one "
                               "standard deviation of the pixels, which is much less than the whole range.")
    if math.isclose(got, 255 * normalised / std, rel_tol=1e-2):
        return _verdict(False, "you divided by the standard deviation. Normalising divides pixels by it, "
                               "so going back to pixels multiplies.")
    return _verdict(False, f"not quite: you gave {got:.4g}.")


# (architecture, wbits, abits, keyword arguments): networks whose layer-wise storage the check compares.
STORAGE_CASES = (("mnist_conv", 2, 4, ()), ("cifar_conv", 1, 1, ()), ("cifar_conv", 4, 2, ()),
                 ("alexnet_tiny", 2, 2, (("width", 0.25),)), ("alexnet_tiny", 4, 4, (("width", 0.25),)))


def _storage_case(arch: str, wbits: int, abits: int, kwargs: tuple) -> tuple[float, int, float]:
    """(float32 share f, wbits k, layer-wise storage / float32 storage) of one untrained member."""
    from . import models, overhead

    model = models.build(arch, wbits, abits, **dict(kwargs))
    return (overhead.fp_share(model), overhead.member_wbits(model),
            overhead.predicted_bytes(model) / overhead.float_bytes(model))


_STORAGE_CACHE: dict = {}


def storage_cases() -> list[tuple[float, int, float]]:
    """:func:`_storage_case` for every entry of ``STORAGE_CASES`` (built once per session)."""
    for case in STORAGE_CASES:
        if case not in _STORAGE_CACHE:
            _STORAGE_CACHE[case] = _storage_case(*case)
    return [_STORAGE_CACHE[c] for c in STORAGE_CASES]


def check_member_storage(student_fn) -> bool:
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
            return _verdict(False, f"your function raised {type(e).__name__}: {e}")
        if math.isclose(got, expected, rel_tol=1e-6):
            continue
        where = f"{arch} a{abits}w{wbits} (f = {f:.4f}, k = {k})"
        if math.isclose(got, k / 32, rel_tol=1e-6):
            return _verdict(False, f"{where}: that is Eq. 6's k/32, as if every weight were stored at k bits; "
                                   "the fraction f stays float32, at 32 bits.")
        if math.isclose(got, f * k / 32 + (1 - f), rel_tol=1e-6):
            return _verdict(False, f"{where}: f and 1 - f are swapped: f is the share kept at 32 bits.")
        if math.isclose(got, 100 * expected, rel_tol=1e-6):
            return _verdict(False, "that looks like a percentage; return a fraction of the float32 network.")
        if math.isclose(got, 1 + expected, rel_tol=1e-6):
            return _verdict(False, f"{where}: that adds a whole FP model; return this member's storage only.")
        return _verdict(False, f"{where}: you return {got:.4g}, expected {expected:.4g}.")
    f, k, expected = storage_cases()[3]
    return _verdict(True, f"correct: e.g. the Tiny ImageNet AlexNet a2w2 at width 0.25 keeps {f:.1%} of its "
                          f"weights in float32 and needs {expected:.3f} of its float32 size, not Eq. 6's "
                          f"{k / 32:.4f}.")
