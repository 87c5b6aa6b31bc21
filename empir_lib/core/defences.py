"""The defences Table 2 compares EMPIR with (paper section 5, Table 2): names, settings, checks, zoo tags.

Each defence is a per-image loss (:mod:`empir_lib.nets.defence_losses`) that
:func:`empir_lib.nets.train.train_member` minimises in place of plain cross-entropy.  The paper names the defences and
their settings (distillation at temperature T = 100, input gradient
regularisation with lambda = 100, adversarial training with examples at eps = 0.3);
the original code's versions are broken or different (the original code,
appendix section 6, book/appendix_original_code.ipynb: its FGSM adversarial
training draws eps in 0-255 units, its distillation's soft labels are
misaligned with the images and its loss undefined, its gradient-regularisation
loss undefined), so these follow the papers that introduced each defence:

* ``distillation`` (Papernot et al. 2016, section IV): a teacher trained on the
  labels with its logits divided by T, then a student of the same network
  trained at the same T on the teacher's softmax(z/T); the student is deployed
  at T = 1, i.e. its logits unchanged.
* ``igr``, input gradient regularisation (Ross & Doshi-Velez 2018, section 3):
  cross-entropy plus lambda times the squared L2 norm of the cross-entropy's
  gradient with respect to the input, per image (double backpropagation).
* ``fgsm-at`` (Goodfellow et al. 2015, section 6): ``w * CE(x) + (1 - w) *
  CE(x_fgsm)`` with x_fgsm = clip(x + eps sign(grad_x CE(x)), 0, 1) made from the
  current weights and the true labels, w = 0.5 as in that paper.  True labels
  make it prone to label leaking (Kurakin et al. 2017): noted in the chapter.
* ``pgd-at`` (Madry et al. 2018, eq. 2.1): CE on PGD examples only (w = 0):
  a uniform random start in the eps-ball, ``steps`` signed-gradient steps of
  ``step_size`` (default 2.5 eps / steps, so the walk can cross the ball),
  projected after each step.

The adversarial examples of training are crafted with the training loss's own
targets (one-hot; CIFAR-10's clipped smoothing is applied to both terms).

Where the original code differs, besides its bugs (appendix section 6):
its FGSM training starts after 10 clean epochs; its PGD training mixes half
clean and half adversarial loss, with 40 steps of 0.01 against the model's
predicted labels; its distilled student adds a hard-label term (weights
0.5/0.5 on MNIST, 0.3/0.7 on CIFAR-10, where T is 10) and trains 50 epochs.
"""
from __future__ import annotations

from .errors import EmpirError, check_choice, check_finite_number, check_positive_int

DEFENCES = ("none", "distillation", "igr", "fgsm-at", "pgd-at")
# The paper's settings (section 5); eps 0.3 is in [0, 1] pixel units.
DEFAULTS = {
    "none": {},
    "distillation": {"temperature": 100.0},
    "igr": {"lam": 100.0},
    "fgsm-at": {"eps": 0.3, "clean_weight": 0.5},
    "pgd-at": {"eps": 0.3, "steps": 7, "step_size": None, "clean_weight": 0.0},
}
# How each defence is written in a zoo id: 'mnist-fp-s1-distill-t100', 'cifar10-fp-s1-pgdat-e0.1'.
TAG_PREFIX = {"distillation": ("distill", "temperature", "t"), "igr": ("igr", "lam", "l"),
              "fgsm-at": ("fgsmat", "eps", "e"), "pgd-at": ("pgdat", "eps", "e")}


def check(defence: str, params: dict | None = None) -> dict:
    """The defence's full parameters (its defaults updated by ``params``), each checked; one error per bad value."""
    check_choice(defence, DEFENCES, "defence")
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULTS[defence]))
    if unknown and defence == "none":
        raise EmpirError(f"{', '.join(unknown)} needs a defence (--defence {' / '.join(DEFENCES[1:])}); "
                         "plain training takes none.")
    if unknown:
        raise EmpirError(f"defence {defence!r} takes no parameter {', '.join(unknown)}; it takes: "
                         f"{', '.join(DEFAULTS[defence]) or 'none'}.")
    out = {**DEFAULTS[defence], **params}
    if "temperature" in out:
        t = check_finite_number(out["temperature"], "temperature")
        if t <= 0:
            raise EmpirError(f"temperature={t!r} must be > 0 (distillation divides the logits by it).")
        out["temperature"] = t
    if "lam" in out:
        lam = check_finite_number(out["lam"], "lambda (lam)")
        if lam < 0:
            raise EmpirError(f"lambda (lam)={lam!r} must be >= 0 (it weighs a squared norm).")
        out["lam"] = lam
    if "eps" in out:
        out["eps"] = check_finite_number(out["eps"], "eps", 0.0, 1.0)
    if "clean_weight" in out:
        out["clean_weight"] = check_finite_number(out["clean_weight"], "clean_weight", 0.0, 1.0)
    if "steps" in out:
        out["steps"] = check_positive_int(out["steps"], "steps")
    if defence == "pgd-at":
        if out["step_size"] is None:
            out["step_size"] = 2.5 * out["eps"] / out["steps"]
        out["step_size"] = check_finite_number(out["step_size"], "step_size", 0.0, 1.0)
    return out


def tag(defence: str, params: dict | None = None) -> str | None:
    """The zoo-id suffix of a defence (None for plain training): ``tag('igr', {'lam': 100})`` -> 'igr-l100'."""
    if defence == "none":
        return None
    params = check(defence, params)
    prefix, key, letter = TAG_PREFIX[defence]
    return f"{prefix}-{letter}{params[key]:g}"
