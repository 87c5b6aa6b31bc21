"""The attack tasks' reference solution and the two plain attacks it is measured against.

Every function here is ``attack(defence, x, y, eps) -> x_adv`` and uses only
NumPy and the task's ``defence`` (:class:`empir_lib.book.attack_tasks.Defence`),
so the grader can run this file's source in a student's worker process
exactly as it runs a submission (``tests/test_attack_tasks.py``).

* :func:`plain_fgsm`: one step of eps along the sign of the gradient of
  ``vote_ce``, the cross-entropy of the vote's own objective (the paper's
  gradient rule, section 4.2) (Goodfellow et al. 2015, Eq. 1 of chapter 2).
* :func:`plain_pgd`: 40 steps of eps / 10 from a uniform random start on the
  same loss (Madry et al. 2018; the step of Table 1's CIFAR-10 PGD).
* :func:`reference_attack`: what the book's worst-case suite teaches, in a
  few lines: an objective that does not vanish (Croce and Hein's DLR on the
  members' mean logits, then the cross-entropy of the members' mean
  probability, then Carlini and Wagner's margin, each from a new random start
  on what survives), a step that shrinks, every iterate judged
  on the deployed decision and the first break kept.  Against a random
  defence it climbs the mean probability's cross-entropy averaged over fresh
  draws (EOT, Athalye et al. 2018) and keeps, per image, the iterate whose
  vote is wrong on the most draws: the expected accuracy is what is graded.
"""
from __future__ import annotations

import numpy as np

PGD_STEPS = 40


def _project(x_adv: np.ndarray, x: np.ndarray, eps: float) -> np.ndarray:
    """Back into the eps-ball around x and the [0, 1] box, as float32."""
    return np.clip(np.clip(x_adv, x - eps, x + eps), 0.0, 1.0).astype(np.float32)


def plain_fgsm(defence: object, x: np.ndarray, y: np.ndarray, eps: float) -> np.ndarray:
    """FGSM on the cross-entropy of the vote's objective."""
    _, grad = defence.loss_gradient(x, y, "vote_ce")
    return _project(x + eps * np.sign(grad), x, eps)


def plain_pgd(defence: object, x: np.ndarray, y: np.ndarray, eps: float) -> np.ndarray:
    """PGD (40 steps of eps / 10, uniform random start) on the cross-entropy of the vote's objective."""
    rng = np.random.default_rng(0)
    x_adv = _project(x + rng.uniform(-eps, eps, x.shape), x, eps)
    for _ in range(PGD_STEPS):
        _, grad = defence.loss_gradient(x_adv, y, "vote_ce")
        x_adv = _project(x_adv + eps / 10 * np.sign(grad), x, eps)
    return x_adv


def reference_attack(defence: object, x: np.ndarray, y: np.ndarray, eps: float, steps: int = 50,
                     samples: int = 8, draws: int = 8, losses: tuple | None = None, seed: int = 0) -> np.ndarray:
    """The reference: PGD on DLR, then the mean probability's CE, then the margin, judged on the deployed decision.

    Against a random defence: EOT over ``samples`` draws on the mean probability's CE alone.
    """
    random = bool(defence.stochastic)
    losses = losses or (("ce_mean_prob",) if random else ("dlr_mean_logits", "ce_mean_prob", "margin_mean_logits"))
    samples, draws = (samples, draws) if random else (1, 1)
    rng = np.random.default_rng(seed)
    best = x.copy()
    wrong = np.zeros(len(x))  # per image: the share of the vote's draws that were wrong at `best`
    for k, loss in enumerate(losses):
        todo = np.flatnonzero(wrong < 1.0) if not random else np.arange(len(x))
        if random and k > 0:
            todo = np.flatnonzero(wrong < 0.75)
        if todo.size == 0:
            break
        x0, y0 = x[todo], y[todo]
        x_adv = _project(x0 + rng.uniform(-eps, eps, x0.shape) / 2, x0, eps)
        for i in range(steps):
            step = eps * (0.25 if i < steps // 2 else 0.1 if i < 3 * steps // 4 else 0.04)
            _, grad = defence.loss_gradient(x_adv, y0, loss, samples)
            x_adv = _project(x_adv + step * np.sign(grad), x0, eps)
            if i % 5 == 4 or i == steps - 1:
                votes = np.asarray(defence.predict(x_adv, draws)).reshape(draws, len(todo))
                share = np.mean(votes != y0[None], 0)
                better = share > wrong[todo]
                best[todo[better]], wrong[todo[better]] = x_adv[better], share[better]
                if not random:  # a deterministic break is final: the broken images leave the batch
                    keep = share < 1.0
                    todo, x0, y0, x_adv = todo[keep], x0[keep], y0[keep], x_adv[keep]
                    if todo.size == 0:
                        break
    return best
