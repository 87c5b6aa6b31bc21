"""Attack it yourself: four defences from the zoo, each a graded task for a student's adaptive attack.

The book's lesson is that a defence is only as strong as the strongest attack
adapted to it (Tramer et al. 2020; Carlini et al. 2019).  Each task gives a
student a defence, a threat model and a budget, and asks for a function
``attack(defence, x, y, eps) -> x_adv``.  Ordered by difficulty (:data:`TASKS`):

1. ``mnist-empir``: EMPIR(2, 1) on MNIST at eps 0.3, judged on the 2-of-3
   vote, whose gradient is zero: the student picks an objective.
2. ``mnist-distill``: the defensively distilled network (T = 100) deployed at
   T = 1: a saturated softmax, zero cross-entropy gradients.
3. ``cifar10-empir``: EMPIR on CIFAR-10 at 8/255.
4. ``cifar10-stochastic``: the jointly trained stochastic-quantiser ensemble
   at 5/255: every query is a fresh random draw (EOT).

**The defence** the student's code receives is opaque: a stub in the
student's process whose methods (:data:`METHODS`) run here, in the grader's
process, on the real ensemble (:class:`Defence`), and are counted here, in
*passes*: one image through the whole ensemble once is one forward pass;
one gradient of one image is one backward pass; EOT's ``samples`` count
each.  Past the budget a query is refused and the task scores zero.

**Judging** (:func:`judge`), on hidden images (:func:`images`: chosen by the
grader's seed among the embedded test sample's images after the first
:data:`PUBLIC`, which the chapter shows and the self-check uses): the answer
must be a float32 array of ``x``'s shape, finite, in [0, 1] and within eps of
``x`` in L-infinity, up to :data:`TOLERANCE`; an image counts as robust when
the *deployed decision* (the vote) still gives its label.  For the random
ensemble, robust accuracy is the **expected** accuracy over
:data:`DRAWS` fresh draws of the deployed vote at the student's point (the
book's definition for a randomised defence: a break that one lucky draw
shows does not count).  Credit runs linearly from 0 at the clean accuracy to
1 at the target (the committed worst-case robust accuracy plus the task's
stated margin).  An exception, a timeout, NaN, a wrong shape or dtype, eps
exceeded or the budget overrun scores 0 with a message saying which.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ..attack import expected, objectives
from ..core import files, memo, paper
from ..core.errors import EmpirError, check_choice
from ..nets import data, diversity
from ..nets import ensemble as ens_mod
from ..nets.models import check_images

RESULTS = files.REPO / "data" / "results"
PUBLIC = 100         # the embedded sample's first images: the chapter's and the self-check's
DRAWS = expected.DRAWS  # fresh draws of a random defence's vote per image when judging (expected accuracy)
TOLERANCE = 1e-6     # on the [0, 1] box and on eps: float32 rounding of x + eps, no more
LOSSES = ("vote_ce", *objectives.ENSEMBLE_OBJECTIVES, "ce_member:<i>", "margin_member:<i>")
METHODS = ("predict", "logits", "loss_gradient", "logits_gradient", "budget_left")


@dataclass(frozen=True)
class Task:
    """One task: the defence, the threat model, the budget, and where its target comes from."""

    name: str
    title: str
    dataset: str
    members: tuple[str, ...]
    eps: float
    result: str              # the committed worst-case results file, under data/results/
    margin: float            # added to that file's robust accuracy: the target
    n_hidden: int            # hidden images graded
    forward_per_image: int   # the budget, in passes per hidden image
    backward_per_image: int
    seconds: float           # wall-clock limit of one attack on all hidden images (2 CPU cores)
    stochastic: bool = False
    norm: str = "linf"

    @property
    def committed(self) -> float:
        """The committed worst-case robust accuracy (the suite's cascade, with provenance in the file)."""
        return float(committed_record(self)["robust_accuracy"])

    @property
    def target(self) -> float:
        return round(self.committed + self.margin, 4)

    def describe(self) -> str:
        return (f"{self.title}: L-inf eps = {self.eps:.4g}; budget {self.forward_per_image} forward and "
                f"{self.backward_per_image} backward passes per image, {self.seconds:g} s for all "
                f"{self.n_hidden} hidden images; target robust accuracy <= {self.target:.3f} (committed "
                f"worst case {self.committed:.3f} + margin {self.margin:g})")


def committed_record(task: Task) -> dict:
    path = RESULTS / task.result
    if not path.is_file():
        raise EmpirError(f"{path} is missing: the task's target is read from it (git checkout -- {path}).")
    return json.loads(path.read_text(encoding="utf-8"))


# Every margin is two standard errors of a robust accuracy measured on the task's hidden images (binomial
# at the committed value for a deterministic defence, the committed per-image spread for the random one),
# and at least one image; tests/test_attack_tasks.py checks it.  (A first version had 0.05 everywhere: plain
# PGD then passed both EMPIR tasks with robust accuracies of 0.03 and 0.04, inside that loose margin.)
TASKS = {t.name: t for t in (
    Task("mnist-empir", "MNIST EMPIR(2, 1), 2-of-3 vote", "mnist",
         ("mnist-a4w2-s1", "mnist-a4w2-s2", "mnist-fp-s1"), 0.3, "mnist/suite/empir-linf-table1.json",
         margin=0.01, n_hidden=100, forward_per_image=300, backward_per_image=200, seconds=120),
    Task("mnist-distill", "MNIST defensive distillation (T = 100, deployed at T = 1)", "mnist",
         ("mnist-fp-s1-distill-t100",), 0.3, "mnist/defences/distillation-suite-linf-table1.json",
         margin=0.01, n_hidden=100, forward_per_image=300, backward_per_image=200, seconds=90),
    Task("cifar10-empir", "CIFAR-10 EMPIR(2, 1), 2-of-3 vote", "cifar10",
         ("cifar10-a2w4-s2", "cifar10-a2w2-s2", "cifar10-fp-s1"), 8 / 255, "cifar10/suite/empir-linf-8-255.json",
         margin=0.02, n_hidden=50, forward_per_image=300, backward_per_image=200, seconds=180),
    # The committed suite judges a random defence per iterate on single draws, a different number from the
    # expected accuracy graded here; the target comes from the expected-accuracy worst case
    # (empir_lib.book.attack_worst).
    Task("cifar10-stochastic", "CIFAR-10 stochastic-quantiser ensemble (joint, diverse)", "cifar10",
         tuple(diversity.joint_ids("cifar10")), paper.FARKYA_EPS, "cifar10/stochastic/expected-5-255-joint.json",
         margin=0.12, n_hidden=30, forward_per_image=1200, backward_per_image=800, seconds=480,
         stochastic=True),
)}


def task(name: str) -> Task:
    check_choice(name, tuple(TASKS), "attack task")
    return TASKS[name]


def images(t: Task, hidden: bool, seed: int = 0, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The task's images: the first ``n`` public ones, or ``n`` hidden ones chosen by ``seed`` after them."""
    x, y = data.load_sample(t.dataset)
    n = t.n_hidden if n is None else n
    if not hidden:
        return x[:min(n, PUBLIC)], y[:min(n, PUBLIC)]
    if n > len(x) - PUBLIC:
        raise EmpirError(f"{n} hidden images asked; the {t.dataset} sample has {len(x) - PUBLIC} after the public.")
    idx = np.sort(np.random.default_rng(seed).choice(np.arange(PUBLIC, len(x)), n, replace=False))
    return x[idx], y[idx]


def ensemble(t: Task) -> ens_mod.Ensemble:
    """The task's defence as the zoo holds it (loaded once per process, hash-checked by the zoo)."""
    return memo.get("attack_tasks.ensembles", t.name, lambda: ens_mod.from_zoo(list(t.members)), 8)


def fingerprint(ens: ens_mod.Ensemble) -> str:
    """sha256 of every member's weights: the judge checks the defence is the one it loaded."""
    h = hashlib.sha256()
    for m in ens.members:
        for w in m.get_weights():
            h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


class BudgetError(EmpirError):
    """A query that would pass the task's budget (refused; the task then scores zero)."""


class Defence:
    """The defence as the grader serves it to a student's attack: every query validated and counted.

    Methods (what the student's ``defence`` stub forwards here):

    * ``predict(x, draws=1)``: the deployed decision, one class per image
      (``draws > 1``: an array (draws, n), a fresh draw each; costs n * draws forward);
    * ``logits(x)``: every member's logits, (members, n, classes) (n forward);
    * ``loss_gradient(x, y, loss="vote_ce", samples=1)``: (loss per image, its
      gradient w.r.t. x).  ``vote_ce`` is the cross-entropy of the vote's own
      objective, the paper's gradient rule (section 4.2: the mean probability
      of the members that voted for the winner); the others are
      :mod:`empir_lib.attack.objectives`'s.  ``samples > 1``: EOT, the mean
      over that many fresh draws (n * samples forward and backward);
    * ``logits_gradient(x, w)``: the gradient of ``sum(w * logits)`` w.r.t. x
      for weights ``w`` shaped like ``logits(x)``: any objective the student
      builds from the logits (n forward and backward);
    * ``budget_left()``: the passes left (free).
    """

    def __init__(self, t: Task, ens: ens_mod.Ensemble, n_images: int):
        self.task, self.ens = t, ens
        self.budget = {"forward": t.forward_per_image * n_images, "backward": t.backward_per_image * n_images}
        self.used = {"forward": 0, "backward": 0}
        self.exceeded = ""
        self.max_batch = max(64, 4 * n_images) * (1 if not t.stochastic else 4)
        self._grads: dict[tuple, Callable] = {}

    def lend_to_sandbox(self) -> tuple[tuple[str, ...], dict]:
        attrs = {"eps": float(self.task.eps), "norm": self.task.norm, "input_shape": tuple(self.ens.input_shape),
                 "num_classes": self.ens.num_classes, "members": len(self.ens.members),
                 "stochastic": self.task.stochastic, "losses": list(LOSSES), "budget": dict(self.budget)}
        return METHODS, attrs

    def _charge(self, forward: int, backward: int) -> None:
        if self.exceeded:
            raise BudgetError(self.exceeded)
        for kind, n in (("forward", forward), ("backward", backward)):
            if self.used[kind] + n > self.budget[kind]:
                self.exceeded = (f"over budget: this query needs {n} {kind} passes with {self.used[kind]} of "
                                 f"{self.budget[kind]} used")
                raise BudgetError(self.exceeded)
        self.used["forward"] += forward
        self.used["backward"] += backward

    def _x(self, x: object) -> np.ndarray:
        arr = check_images(x, self.ens.input_shape, "the images you queried")
        if len(arr) > self.max_batch:
            raise EmpirError(f"a query of {len(arr)} images; at most {self.max_batch} at once.")
        return arr

    def _y(self, y: object, n: int) -> np.ndarray:
        arr = np.asarray(y)
        if arr.shape != (n,) or arr.dtype.kind not in "iu" or arr.min(initial=0) < 0 \
                or arr.max(initial=0) >= self.ens.num_classes:
            raise EmpirError(f"labels must be {n} integers in [0, {self.ens.num_classes}); got {arr.dtype} "
                             f"{arr.shape}.")
        return arr.astype(np.int32)

    def budget_left(self) -> dict:
        return {k: self.budget[k] - self.used[k] for k in self.budget}

    def predict(self, x: object, draws: int = 1) -> np.ndarray:
        x = self._x(x)
        draws = int(draws)
        if not 1 <= draws <= 64:
            raise EmpirError(f"draws must be between 1 and 64; got {draws}.")
        self._charge(len(x) * draws, 0)
        preds = np.stack([ens_mod.predict(self.ens, x) for _ in range(draws)])
        return preds[0] if draws == 1 else preds

    def logits(self, x: object) -> np.ndarray:
        x = self._x(x)
        self._charge(len(x), 0)
        return ens_mod.member_logits(self.ens, tf.constant(x)).numpy()

    def loss_gradient(self, x: object, y: object, loss: str = "vote_ce", samples: int = 1
                      ) -> tuple[np.ndarray, np.ndarray]:
        x = self._x(x)
        y = self._y(y, len(x))
        samples = int(samples)
        if not 1 <= samples <= 64:
            raise EmpirError(f"samples must be between 1 and 64; got {samples}.")
        fn = self._loss(str(loss), samples)
        self._charge(len(x) * samples, len(x) * samples)
        value, grad = fn(tf.constant(x), tf.constant(y))
        return value.numpy(), grad.numpy()

    def logits_gradient(self, x: object, w: object) -> tuple[np.ndarray, np.ndarray]:
        x = self._x(x)
        k, c = len(self.ens.members), self.ens.num_classes
        w = np.asarray(w, dtype=np.float32)
        if w.shape != (k, len(x), c) or not np.all(np.isfinite(w)):
            raise EmpirError(f"w must be finite, shaped like the logits ({k}, {len(x)}, {c}); got {w.shape}.")
        self._charge(len(x), len(x))
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            z = ens_mod.member_logits(self.ens, xt)
            total = tf.reduce_sum(z * w)
        return z.numpy(), tape.gradient(total, xt).numpy()

    def _loss(self, name: str, samples: int) -> Callable:
        key = (name, samples)
        if key not in self._grads:
            if name == "vote_ce":
                order = ens_mod.priority(self.ens)

                def base(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
                    out = ens_mod.combine(ens_mod.member_logits(self.ens, x), order, self.ens.rule)
                    p = tf.gather(out["attack_prob"], y, batch_dims=1)
                    return -tf.math.log(tf.maximum(p, 1e-30)), out["pred"]

                f = base if samples == 1 else objectives.expectation(base, samples, "draw", self.ens.num_classes)
            else:
                try:
                    f = objectives.loss_fn(self.ens, name, samples)
                except EmpirError as e:
                    raise EmpirError(f"{e} The losses: {', '.join(LOSSES)}.") from None

            @tf.function(reduce_retracing=True)
            def value_and_grad(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    loss = f(x, y)[0]
                return loss, tape.gradient(loss, x)

            self._grads[key] = value_and_grad
        return self._grads[key]


def per_image(t: Task, ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Per image: 1 if the deployed decision gives the label; for a random defence the share of :data:`DRAWS` draws.

    The draws restart from ``seed`` on every call (:func:`empir_lib.nets.stochastic.reseed`): the clean
    and the attacked images meet the same noise, so an attack that changes nothing gains nothing by luck.
    """
    if not t.stochastic:
        return (ens_mod.predict(ens, x) == y).astype(np.float64)
    return expected.correct_rate(ens, x, y, DRAWS, seed=seed)


def accuracy(t: Task, ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """Accuracy of the deployed decision; for a random defence the expected accuracy (:func:`per_image`)."""
    return float(np.mean(per_image(t, ens, x, y, seed)))


@dataclass
class Outcome:
    """A graded attack: its credit (0..1), the numbers behind it, and the message the student reads."""

    task: str
    credit: float
    message: str
    clean: float = math.nan
    robust: float = math.nan
    target: float = math.nan
    n: int = 0
    seconds: float = math.nan
    used: dict | None = None
    error: str = ""


def validate(t: Task, x: np.ndarray, x_adv: object) -> tuple[np.ndarray | None, str]:
    """The answer as float32 images, or None and why not (shape, dtype, NaN, the box, eps)."""
    if not isinstance(x_adv, np.ndarray):
        return None, f"your attack returned a {type(x_adv).__name__}; return a NumPy array shaped like x."
    if x_adv.shape != x.shape:
        return None, f"your attack returned shape {x_adv.shape}; x has shape {x.shape}."
    if x_adv.dtype != np.float32:
        return None, f"your attack returned dtype {x_adv.dtype}; return float32, like x."
    if not np.all(np.isfinite(x_adv)):
        return None, f"your attack returned {int(np.sum(~np.isfinite(x_adv)))} NaN or infinite pixels."
    lo, hi = float(x_adv.min()), float(x_adv.max())
    if lo < -TOLERANCE or hi > 1 + TOLERANCE:
        return None, f"your images span [{lo:.4g}, {hi:.4g}]; clip them to [0, 1] (tolerance {TOLERANCE:g})."
    dist = float(np.max(np.abs(x_adv.astype(np.float64) - x.astype(np.float64))))
    if dist > t.eps + TOLERANCE:
        return None, (f"max |x_adv - x| = {dist:.6g} exceeds eps = {t.eps:.6g} (tolerance {TOLERANCE:g}); "
                      "project onto the eps-ball after every step.")
    return x_adv, ""


def judge(t: Task, defence: Defence, x: np.ndarray, y: np.ndarray, x_adv: object, seconds: float,
          error: str = "", before: str = "", seed: int = 0, where: str = "hidden") -> Outcome:
    """Grade one attack's answer (module docstring, "Judging"); ``error`` is what went wrong running it."""
    ens = defence.ens
    out = Outcome(t.name, 0.0, "", target=t.target, n=len(x), seconds=round(seconds, 2), used=dict(defence.used))
    clean = out.clean = accuracy(t, ens, x, y, seed)
    spent = (f"{defence.used['forward']} of {defence.budget['forward']} forward and {defence.used['backward']} "
             f"of {defence.budget['backward']} backward passes, {seconds:.1f} s of {t.seconds:g} s")
    if before and fingerprint(ens) != before:
        error = "the defence's weights changed during your attack"
    if defence.exceeded:  # whatever the attack did after its refused query
        error = f"your attack went {defence.exceeded}"
    if not error:
        x_adv, error = validate(t, x, x_adv)
    if error:
        out.error, out.message = error, f"\u2717 {t.name}: 0 credit: {error.rstrip('.')}. (Used {spent}.)"
        return out
    robust = out.robust = accuracy(t, ens, x_adv, y, seed)
    span = clean - t.target
    out.credit = 1.0 if robust <= t.target else (0.0 if span <= 0 else max(0.0, (clean - robust) / span))
    what = f"expected accuracy over {DRAWS} draws" if t.stochastic else "accuracy of the vote"
    mark = "\u2713" if out.credit >= 1 else "\u2717"
    out.message = (f"{mark} {t.name}: robust {what} {robust:.3f} on {len(x)} {where} images (clean {clean:.3f}, "
                   f"target <= {t.target:.3f}): {100 * out.credit:.0f}% of the credit. Used {spent}.")
    return out
