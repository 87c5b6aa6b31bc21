"""FGSM, BIM, PGD and CW-L2 (paper section 2 and Table 1) under two protocols.

An attack differentiates a **score function**: images -> (batch, classes)
scores.  FGSM, BIM and PGD take signed steps up the softmax cross-entropy of
the scores; CW-L2 pushes down the margin between the label's score and the
best other score.  *What the scores are* is the protocol, so one attack
serves both (README, "Two protocols"):

**paper protocol** (``protocol="paper"``): what the original code
differentiates (the original code, appendix sections 0, 4 and 5, in
book/appendix_original_code.ipynb), reproduced on purpose:

* FGSM and PGD on an ensemble use ``original_attack_prob_as_logits``: the
  ensemble's gradient rule of section 4.2 (voters' mean probability for
  voting, mean probability for averaging) fed to softmax cross-entropy *as
  if it were logits*, which flattens the gradient;
* BIM and CW on an ensemble use ``original_fp_member``: the logits of the FP
  member alone (the original's dict-key collision);
* a single model (the baseline) is attacked on its logits;
* labels are the ensemble's own clean predictions;
* PGD's random start is not clipped to the pixel box before the first step.

**adaptive protocol** (``protocol="adaptive"``): what a careful evaluator
tries (Tramer et al. 2020; Gupta & Ajanthan), labels are the true labels:

* ``mean_prob``: the log of the members' mean probability (cross-entropy
  is then the negative log-likelihood of the mixture);
* ``mean_logits``: the mean of the members' logits;
* ``temperature``: the log-mean of softmax(z_k / T_k), where every member's
  logits are divided by their own top-1 minus top-2 margin (held constant
  under differentiation).  This undoes saturated softmaxes, the gradient
  vanishing that Gupta & Ajanthan fix with temperature scaling; it is a
  margin-based stand-in for their NJS criterion, not their exact rule;
* ``member:<i>``: member i alone; for the FP member this is the transfer
  attack from the FP member.

The reported adaptive figure is the worst case over these
(:func:`adaptive_objectives` lists them for an ensemble).

All attacks are untargeted, L-infinity (FGSM, BIM, PGD) or L2 (CW), and keep
every pixel in the clip range [0, 1].  Each batch is attacked inside one
``tf.function``, loop included, so the Python overhead per step is nil.
"""
from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from ..core import distribute, settings
from ..core.errors import EmpirError, check_choice, check_finite_number, check_positive_int
from ..nets import ensemble as ens_mod
from ..nets import steps
from ..nets.metrics import CLIP
from ..nets.models import check_images

Ensemble = ens_mod.Ensemble
ScoreFn = Callable[[tf.Tensor], tf.Tensor]

ATTACKS = ("fgsm", "bim", "pgd", "cw")
PROTOCOLS = ("paper", "adaptive")
FIXED_OBJECTIVES = ("original_attack_prob_as_logits", "original_fp_member", "mean_prob", "mean_logits",
                    "temperature")

# Table 1's parameters per dataset live in settings.DATASETS[name].attacks (settings.ATTACK_PRESETS).
PARAMS = {"fgsm": ("eps",), "bim": ("eps", "eps_iter", "nb_iter"), "pgd": ("eps", "eps_iter", "nb_iter"),
          "cw": tuple(settings.CW_DEFAULTS)}


def preset(dataset: str, attack: str, **overrides: float) -> dict:
    """Table 1's parameters for ``attack`` on ``dataset``, with checked overrides."""
    check_choice(dataset, tuple(settings.ATTACK_PRESETS), "dataset")
    check_choice(attack, ATTACKS, "attack")
    return check_params(attack, {**settings.ATTACK_PRESETS[dataset][attack], **overrides})


def check_params(attack: str, params: dict) -> dict:
    """Validate attack parameters: a bad eps or step count is named, never used."""
    check_choice(attack, ATTACKS, "attack")
    unknown = sorted(set(params) - set(PARAMS[attack]))
    if unknown:
        raise EmpirError(f"unknown {attack} parameter(s) {', '.join(unknown)}; "
                         f"{attack} takes: {', '.join(PARAMS[attack])}.")
    missing = sorted(set(PARAMS[attack]) - set(params))
    if missing:
        raise EmpirError(f"{attack} needs {', '.join(missing)}; start from attacks.preset(dataset, {attack!r}).")
    p = dict(params)
    span = CLIP[1] - CLIP[0]
    if attack != "cw":
        eps = p["eps"]
        if isinstance(eps, numbers.Real) and not isinstance(eps, bool) and eps < 0:
            raise EmpirError(f"eps={eps} is negative; eps is a perturbation size in [0, {span}].")
        p["eps"] = check_finite_number(eps, "eps", 0.0, span)
    if attack in ("bim", "pgd"):
        p["eps_iter"] = check_finite_number(p["eps_iter"], "eps_iter", 0.0, span)
        if p["eps_iter"] <= 0:
            raise EmpirError(f"eps_iter={p['eps_iter']} must be positive.")
        p["nb_iter"] = check_positive_int(p["nb_iter"], "nb_iter")
    if attack == "cw":
        for k in ("binary_search_steps", "max_iterations", "batch_size"):
            p[k] = check_positive_int(p[k], k)
        p["learning_rate"] = check_finite_number(p["learning_rate"], "learning_rate", 1e-8, 1e3)
        p["initial_const"] = check_finite_number(p["initial_const"], "initial_const", 1e-8, 1e8)
        p["confidence"] = check_finite_number(p["confidence"], "confidence", 0.0, 1e6)
        p["abort_early"] = bool(p["abort_early"])
    return p


# --- what to differentiate ----------------------------------------------------------------


def adaptive_objectives(n_members: int) -> list[str]:
    """The adaptive variants for an ensemble of ``n_members``; the worst case over them is reported."""
    if n_members == 1:
        return ["member:0"]
    return ["mean_prob", "mean_logits", "temperature"] + [f"member:{i}" for i in range(n_members)]


def paper_objective(ens: Ensemble, attack: str) -> str:
    """The objective the original code differentiates for ``attack`` (the original code, appendix section 5)."""
    check_choice(attack, ATTACKS, "attack")
    if len(ens.members) == 1:
        return "member:0"
    if attack in ("fgsm", "pgd"):
        return "original_attack_prob_as_logits"
    return "original_fp_member"


def objective_for(ens: Ensemble, attack: str, protocol: str) -> str:
    """The default objective of a protocol: the paper's, or the first adaptive variant."""
    check_choice(protocol, PROTOCOLS, "protocol")
    return paper_objective(ens, attack) if protocol == "paper" else adaptive_objectives(len(ens.members))[0]


def _member_index(ens: Ensemble, objective: str) -> int:
    try:
        i = int(objective.split(":", 1)[1])
    except ValueError:
        i = -1
    if not 0 <= i < len(ens.members):
        raise EmpirError(f"objective {objective!r} names no member; this ensemble has members "
                         f"0..{len(ens.members) - 1} ({', '.join(ens.names)}).")
    return i


def score_function(ens: Ensemble, objective: str) -> ScoreFn:
    """The map images -> scores that an attack differentiates (see the module docstring)."""
    if isinstance(objective, str) and objective.startswith("member:"):
        i = _member_index(ens, objective)
        return lambda x: ens.members[i](x, training=False)
    check_choice(objective, FIXED_OBJECTIVES + tuple(f"member:{i}" for i in range(len(ens.members))),
                 "objective")
    order = ens_mod.priority(ens)
    k = float(len(ens.members))

    if objective == "original_fp_member":
        if not any(ens.fp):
            raise EmpirError("objective 'original_fp_member' needs a full-precision member; this ensemble "
                             f"has none ({', '.join(ens.names)}).")
        fp = int(order[0])
        return lambda x: ens.members[fp](x, training=False)
    if objective == "original_attack_prob_as_logits":
        return lambda x: ens_mod.combine(ens_mod.member_logits(ens, x), order, ens.rule)["attack_prob"]
    if objective == "mean_logits":
        return lambda x: tf.reduce_mean(ens_mod.member_logits(ens, x), 0)
    if objective == "mean_prob":
        return lambda x: tf.reduce_logsumexp(tf.nn.log_softmax(ens_mod.member_logits(ens, x)), 0) - tf.math.log(k)

    def tempered(x):
        z = ens_mod.member_logits(ens, x)
        top2 = tf.math.top_k(z, 2).values
        t = tf.stop_gradient(tf.maximum(top2[..., 0] - top2[..., 1], 1e-3))[..., None]
        return tf.reduce_logsumexp(tf.nn.log_softmax(z / t), 0) - tf.math.log(k)

    return tempered


# --- the attacks on one batch (tensors in, tensors out) -----------------------------------------


def ce_grad(score_fn: ScoreFn, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """The gradient of the softmax cross-entropy of ``score_fn(x)`` w.r.t. the images."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=score_fn(x))
    return tape.gradient(loss, x)


def loss_and_gradient(ens: Ensemble, objective: str, x: ArrayLike, labels: ArrayLike
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per-image softmax cross-entropy of an objective's scores and its gradient w.r.t. the images.

    This is exactly what FGSM, BIM and PGD step along (for reading and plotting
    an attack's loss landscape): ``loss`` has shape (N,), ``grad`` the images' shape.
    """
    x = tf.constant(check_images(x, ens.input_shape))
    labels = tf.constant(np.asarray(labels).reshape(-1).astype(np.int32))
    score_fn = score_function(ens, objective)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=score_fn(x))
    return loss.numpy(), tape.gradient(loss, x).numpy()


_ce_grad = ce_grad  # its old, private name


def fgsm(score_fn: ScoreFn, x: tf.Tensor, y: tf.Tensor, eps: float, clip: tuple[float, float] = CLIP) -> tf.Tensor:
    """Eq. 1: one step of size eps along the sign of the loss gradient, then clip."""
    # The ball's radius is |eps|: a negative eps steps down the loss (the exercises' check of that mistake).
    return steps.signed_step(x, x, ce_grad(score_fn, x, y), eps, abs(eps), clip)


def iterative(score_fn: ScoreFn, x: tf.Tensor, y: tf.Tensor, eps: float, eps_iter: float, nb_iter: int,
              eta0: tf.Tensor, clip: tuple[float, float] = CLIP) -> tf.Tensor:
    """BIM (Eq. 2, ``eta0 = 0``) and PGD (Eq. 4, random ``eta0``), the original's update order.

    Each step: ``x_adv = clip_box(x + eta + eps_iter * sign(grad))``, then
    ``eta = clip(x_adv - x, -eps, eps)``.  The last image is ``clip_box(x + eta)``.
    """
    lo, hi = clip
    eta = eta0
    for _ in tf.range(nb_iter):
        xa = x + eta
        xa = tf.clip_by_value(xa + eps_iter * tf.sign(ce_grad(score_fn, xa, y)), lo, hi)
        eta = tf.clip_by_value(xa - x, -eps, eps)
    return tf.clip_by_value(x + eta, lo, hi)


def cw_l2(score_fn: ScoreFn, x: tf.Tensor, y: tf.Tensor, const: tf.Tensor, num_classes: int, max_iterations: int,
          learning_rate: float, confidence: float, abort_early: bool, clip: tuple[float, float] = CLIP,
          decide: ScoreFn | None = None, joint: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """One binary-search step of Carlini & Wagner's L2 attack (Eq. 3), as cleverhans 1.0 runs it.

    Optimises ``w`` in tanh space with Adam: ``x' = (tanh(w + atanh(x)) + 1) / 2``
    (box-scaled), loss ``sum(c * max(0, z_y - max_{j!=y} z_j + kappa)) + ||x' - x||^2``.
    Early abort checks the loss every ``max_iterations // 10`` steps and stops
    when it fell by less than 0.01%.  Returns the successful image with the
    smallest L2 per input (the input itself where none succeeded) and its
    squared L2 distance (inf where none).  With ``decide`` (images -> class)
    an iterate succeeds only when ``decide`` says the class is not ``y``: the
    worst-case suite passes the ensemble's vote, so every image it reports
    broken flips the deployed decision, not just the attacked scores.
    """
    lo, hi = clip
    timg = tf.atanh((tf.clip_by_value((x - lo) / (hi - lo), 0.0, 1.0) * 2.0 - 1.0) * 0.999999)
    origin = (tf.tanh(timg) + 1.0) / 2.0 * (hi - lo) + lo
    onehot = tf.one_hot(y, num_classes)
    w = tf.zeros_like(x)
    m, v = tf.zeros_like(x), tf.zeros_like(x)
    b1, b2, eps_adam = 0.9, 0.999, 1e-8
    best_l2 = tf.fill(tf.shape(y), np.float32(np.inf))
    best = x
    prev = tf.constant(1e6, tf.float32)
    decided = tf.zeros_like(y)  # the loop's deployed class (joint=True); AutoGraph needs it defined
    period = max(max_iterations // 10, 1)
    axes = list(range(1, len(x.shape)))
    for it in tf.range(max_iterations):
        with tf.GradientTape() as tape:
            tape.watch(w)
            new = (tf.tanh(w + timg) + 1.0) / 2.0 * (hi - lo) + lo
            scores = score_fn(new)
            if joint:
                scores, decided = scores
            l2 = tf.reduce_sum(tf.square(new - origin), axes)
            real = tf.reduce_sum(onehot * scores, -1)
            other = tf.reduce_max((1.0 - onehot) * scores - onehot * 10000.0, -1)
            loss = tf.reduce_sum(const * tf.maximum(0.0, real - other + confidence)) + tf.reduce_sum(l2)
        g = tape.gradient(loss, w)
        t = tf.cast(it + 1, tf.float32)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * tf.square(g)
        w = w - learning_rate * tf.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (tf.sqrt(v) + eps_adam)
        if abort_early and it % period == 0:
            if loss > prev * 0.9999:
                break
            prev = loss
        # Success is judged on the scores seen before this step's update, as in the original.
        if joint:  # the deployed decision read off this very pass
            success = decided != y
        elif decide is None:  # the paper protocol: success on the attacked scores themselves
            success = tf.argmax(scores + confidence * onehot, -1, output_type=tf.int32) != y
        else:  # the worst-case suite: success only when the deployed decision (the vote) is wrong
            success = decide(new) != y
        better = success & (l2 < best_l2)
        best_l2 = tf.where(better, l2, best_l2)
        best = tf.where(tf.reshape(better, [-1] + [1] * (len(x.shape) - 1)), new, best)
    return best, best_l2


def cw_search(attack_step: Callable, x: np.ndarray, y: np.ndarray, p: dict) -> np.ndarray:
    """CW's binary search over the constant c (``binary_search_steps`` rounds, per image)."""
    n = len(y)
    const = np.full(n, p["initial_const"], np.float32)
    lower, upper = np.zeros(n, np.float32), np.full(n, 1e10, np.float32)
    best, best_l2 = np.array(x), np.full(n, np.inf, np.float32)
    for _ in range(p["binary_search_steps"]):
        adv, l2 = (a.numpy() for a in attack_step(tf.constant(x), tf.constant(y), tf.constant(const)))
        ok = np.isfinite(l2)
        improve = ok & (l2 < best_l2)
        best[improve], best_l2[improve] = adv[improve], l2[improve]
        upper = np.where(ok, np.minimum(upper, const), upper)
        lower = np.where(ok, lower, np.maximum(lower, const))
        const = np.where(upper < 1e9, (lower + upper) / 2, const * 10).astype(np.float32)
    return best


# --- compiled attacks for an ensemble ----------------------------------------------------------


def compile_attack(ens: Ensemble, attack: str, objective: str, params: dict, clip: tuple[float, float] = CLIP,
                   clip_start: bool = True) -> Callable[..., np.ndarray]:
    """A function ``(x, y, seed) -> x_adv`` on numpy batches, traced once per batch shape.

    ``seed`` (an int) fixes PGD's random start for that batch, so a resumed
    evaluation draws the same starts as an uninterrupted one.  FGSM, BIM and
    PGD split each batch over the replicas of the ``tf.distribute`` strategy
    (:mod:`empir_lib.core.distribute`; one device here): every image's attack is
    independent of the others', and PGD's start is drawn for the whole batch
    first, so the result does not depend on the number of replicas.  CW runs
    on one replica (its early abort looks at the whole batch's loss).
    """
    p = check_params(attack, params)
    score_fn = score_function(ens, objective)
    lo, hi = clip
    strat = distribute.strategy()

    if attack == "fgsm":
        fn = distribute.sharded(strat, lambda x, y: fgsm(score_fn, x, y, p["eps"], clip), 2)
        return lambda x, y, seed=0: fn(tf.constant(x), tf.constant(y))
    if attack in ("bim", "pgd"):
        @tf.function(reduce_retracing=True)
        def start(x, seed):
            if attack == "pgd":
                eta = tf.random.stateless_uniform(tf.shape(x), seed, -p["eps"], p["eps"])
                if clip_start:  # cleverhans 4 clips the start; the original did not
                    eta = tf.clip_by_value(x + eta, lo, hi) - x
                return eta
            return tf.zeros_like(x)

        run = distribute.sharded(
            strat, lambda x, y, eta: iterative(score_fn, x, y, p["eps"], p["eps_iter"], p["nb_iter"], eta, clip), 3)

        def run_iterative(x, y, seed=0):
            x = tf.constant(x)
            return run(x, tf.constant(y), start(x, tf.constant([seed, 0x5EED], tf.int64)))

        return run_iterative
    step = tf.function(lambda x, y, c: cw_l2(score_fn, x, y, c, ens.num_classes, p["max_iterations"],
                                             p["learning_rate"], p["confidence"], p["abort_early"], clip),
                       reduce_retracing=True)

    def run_cw(x, y, seed=0):
        # The original attacks CW in batches of 100, and early abort looks at the batch's summed loss.
        bs = p["batch_size"]
        return np.concatenate([cw_search(step, x[i:i + bs], y[i:i + bs], p) for i in range(0, len(x), bs)])

    return run_cw


def generate(ens: Ensemble, attack: str, x: ArrayLike, y: ArrayLike | None = None, protocol: str = "paper",
             objective: str | None = None, params: dict | None = None, dataset: str | None = None, seed: int = 0,
             batch_size: int = 500) -> np.ndarray:
    """Adversarial images for ``x`` against ``ens`` (a convenience over :func:`compile_attack`).

    ``params`` default to ``preset(dataset, attack)``.  Under the paper
    protocol the labels are the ensemble's clean predictions; under the
    adaptive protocol they are the true labels ``y`` (required).
    """
    check_choice(attack, ATTACKS, "attack")
    check_choice(protocol, PROTOCOLS, "protocol")
    x = check_images(x, ens.input_shape)
    if params is None:
        if dataset is None:
            raise EmpirError("pass params=... or dataset=... (to use the paper's Table 1 preset).")
        params = preset(dataset, attack)
    objective = objective or objective_for(ens, attack, protocol)
    labels = attack_labels(ens, x, y, protocol)
    run = compile_attack(ens, attack, objective, params, clip_start=protocol != "paper")
    batch_size = check_positive_int(batch_size, "batch_size")
    return np.concatenate([run(x[i:i + batch_size], labels[i:i + batch_size], seed + i // batch_size)
                           for i in range(0, len(x), batch_size)])


def attack_labels(ens: Ensemble, x: ArrayLike, y: ArrayLike | None, protocol: str) -> np.ndarray:
    """The labels an attack moves away from: the clean prediction (paper) or the truth (adaptive)."""
    if protocol == "paper":
        return ens_mod.predict(ens, x).astype(np.int32)
    if y is None:
        raise EmpirError("the adaptive protocol attacks the true labels: pass y.")
    y = np.asarray(y).reshape(-1)
    if len(y) != len(x):
        raise EmpirError(f"{len(x)} images but {len(y)} labels.")
    if y.min(initial=0) < 0 or y.max(initial=0) >= ens.num_classes:
        raise EmpirError(f"labels must lie in 0..{ens.num_classes - 1}; got {y.min()}..{y.max()}.")
    return y.astype(np.int32)
