"""The defences Table 2 compares EMPIR with (paper section 5, Table 2): one registry record each.

A :class:`Defence` holds everything the library knows about one defence: its
name, its parameters (defaults, checks, how the zoo id and the chapters write
them), its labels and its place in the paper's Table 2.  The CLI's flags, the
zoo tags and the chapters' labels are all generated from :data:`REGISTRY`; the
loss is registered beside it in :mod:`empir_lib.nets.defence_losses` under the
same name.  Adding a defence touches this module, the loss module, and (if the
zoo should train it) a row in :mod:`empir_lib.core.settings`.

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
predicted labels (the named recipe ``original`` of ``pgd-at``:
:data:`RECIPES`); its distilled student adds a hard-label term (weights
0.5/0.5 on MNIST, 0.3/0.7 on CIFAR-10, where T is 10) and trains 50 epochs.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import EmpirError, check_choice, check_finite_number, check_positive_int


def _positive(name: str) -> Callable[[object], float]:
    def check(v: object) -> float:
        v = check_finite_number(v, name)
        if v <= 0:
            raise EmpirError(f"{name}={v!r} must be > 0.")
        return v
    return check


def _non_negative(name: str) -> Callable[[object], float]:
    def check(v: object) -> float:
        v = check_finite_number(v, name)
        if v < 0:
            raise EmpirError(f"{name}={v!r} must be >= 0 (it weighs a squared norm).")
        return v
    return check


def _unit(name: str) -> Callable[[object], float]:
    return lambda v: check_finite_number(v, name, 0.0, 1.0)


def _choice(name: str, choices: tuple[str, ...]) -> Callable[[object], str]:
    return lambda v: check_choice(v, choices, name)


@dataclass(frozen=True)
class Param:
    """One parameter of a defence.

    ``letter`` writes it in a zoo tag (``e0.3``); ``text`` writes it in the
    chapters (``ε = {}``); ``kind`` is what the CLI parses (float, int or str).
    """

    name: str
    default: object
    letter: str
    text: str
    help: str
    check: Callable[[object], object]
    kind: type = float


@dataclass(frozen=True)
class Defence:
    """A defence of Table 2 (paper section 5.3): what every layer needs to know about it.

    ``tagged`` names the parameters always written in its zoo tag; any other
    parameter is written only when it differs from its default, so the zoo
    tag allows any number of parameters and old tags stay as they were.
    ``finish`` fills parameters that depend on others (PGD's step from eps).
    ``label``, ``short`` and ``trained`` are how the chapters name it
    ('FGSM adversarial training', 'FGSM-AT', 'FGSM-trained').
    """

    name: str
    tag: str
    label: str
    short: str
    trained: str = ""
    params: tuple[Param, ...] = ()
    tagged: tuple[str, ...] = ()
    paper_order: int | None = None
    teacher: bool = False
    finish: Callable[[dict], dict] = field(default=lambda p: p)

    @property
    def defaults(self) -> dict:
        """The paper's settings (section 5): each parameter's default."""
        return {p.name: p.default for p in self.params}

    def param(self, name: str) -> Param:
        """One parameter by name."""
        return next(p for p in self.params if p.name == name)


REGISTRY: dict[str, Defence] = {}


def register(defence: Defence) -> Defence:
    """Add ``defence`` to :data:`REGISTRY` (its name must be new); returns it."""
    if defence.name in REGISTRY:
        raise EmpirError(f"a defence named {defence.name!r} is already registered.")
    missing = set(defence.tagged) - {p.name for p in defence.params}
    if missing:
        raise EmpirError(f"defence {defence.name!r} tags parameters it does not have: {', '.join(sorted(missing))}.")
    REGISTRY[defence.name] = defence
    return defence


def unregister(name: str) -> None:
    """Remove a registered defence (tests register toy defences and take them out again)."""
    REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    """Every registered defence's name, 'none' (plain training) first."""
    return tuple(REGISTRY)


def get(name: str) -> Defence:
    """The registered defence ``name``, or one sentence naming those there are."""
    return REGISTRY[check_choice(name, names(), "defence")]


def _pgd_step(p: dict) -> dict:
    # 2.5 eps / steps lets the walk cross the whole ball (Madry et al. 2018, section 2).
    step = 2.5 * p["eps"] / p["steps"] if p["step_size"] is None else p["step_size"]
    return {**p, "step_size": check_finite_number(step, "step_size", 0.0, 1.0)}


_EPS = Param("eps", 0.3, "e", "\u03b5 = {}", "adversarial examples' eps in [0, 1] (paper: 0.3)", _unit("eps"))

register(Defence("none", "", "no defence", "none", "plain"))
register(Defence(
    "distillation", "distill", "defensive distillation", "distill.", "distilled",
    (Param("temperature", 100.0, "t", "T = {}", "distillation's T (paper: 100)", _positive("temperature")),),
    tagged=("temperature",), paper_order=0, teacher=True))
register(Defence(
    "igr", "igr", "input gradient regularisation", "IGR", "IGR-trained",
    (Param("lam", 100.0, "l", "\u03bb = {}", "igr's lambda (paper: 100)", _non_negative("lambda (lam)")),),
    tagged=("lam",), paper_order=1))
register(Defence(
    "fgsm-at", "fgsmat", "FGSM adversarial training", "FGSM-AT", "FGSM-trained",
    (_EPS, Param("clean_weight", 0.5, "w", "clean weight {}", "weight of the clean loss (fgsm-at 0.5, pgd-at 0)",
                 _unit("clean_weight"))),
    tagged=("eps",), paper_order=2))
register(Defence(
    "pgd-at", "pgdat", "PGD adversarial training", "PGD-AT", "PGD-trained",
    (_EPS, Param("steps", 7, "n", "{} steps", "pgd-at's steps (7)", lambda v: check_positive_int(v, "steps"), int),
     Param("step_size", None, "a", "step {}", "pgd-at's step (2.5 eps / steps)", _unit("step_size")),
     Param("clean_weight", 0.0, "w", "clean weight {}", "weight of the clean loss (fgsm-at 0.5, pgd-at 0)",
           _unit("clean_weight")),
     Param("labels", "true", "y", "{} labels", "labels the examples are crafted against: true or predicted",
           _choice("labels", ("true", "predicted")), str)),
    tagged=("eps",), paper_order=3, finish=_pgd_step))

# Named parameter sets: the original code's quirks only behind an explicit name (its
# PGD training: half clean loss, 40 steps of 0.01 against the model's own predictions;
# the original code, appendix section 6).
RECIPES: dict[str, dict[str, dict]] = {
    "pgd-at": {"madry": {}, "original": {"steps": 40, "step_size": 0.01, "clean_weight": 0.5,
                                         "labels": "predicted"}},
}



def check(defence: str, params: dict | None = None) -> dict:
    """The defence's full parameters (its defaults updated by ``params``), each checked; one error per bad value."""
    record = get(defence)
    params = dict(params or {})
    unknown = sorted(set(params) - set(record.defaults))
    if unknown and defence == "none":
        raise EmpirError(f"{', '.join(unknown)} needs a defence (--defence {' / '.join(names()[1:])}); "
                         "plain training takes none.")
    if unknown:
        raise EmpirError(f"defence {defence!r} takes no parameter {', '.join(unknown)}; it takes: "
                         f"{', '.join(record.defaults) or 'none'}.")
    out = {**record.defaults, **params}
    out = {k: (v if v is None else record.param(k).check(v)) for k, v in out.items()}
    return record.finish(out)


def recipe(defence: str, name: str) -> dict:
    """A named parameter set of ``defence`` (:data:`RECIPES`): ``recipe('pgd-at', 'original')``."""
    recipes = RECIPES.get(get(defence).name, {})
    return dict(recipes[check_choice(name, tuple(recipes) or ("(none)",), f"{defence} recipe")])


def _value_text(v: object) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)[:4]


def _extra(record: Defence, full: dict) -> list[str]:
    """The parameters besides ``tagged`` that differ from what the tagged values alone imply."""
    plain = check(record.name, {k: full[k] for k in record.tagged})
    return [p.name for p in record.params if p.name not in record.tagged and full[p.name] != plain[p.name]]


def tag(defence: str, params: dict | None = None) -> str | None:
    """The zoo-id suffix of a defence (None for plain training): ``tag('igr', {'lam': 100})`` -> 'igr-l100'.

    The ``tagged`` parameters always, then any other that differs from its
    default: ``tag('pgd-at', recipe('pgd-at', 'original'))`` -> 'pgdat-e0.3-n40-a0.01-w0.5-ypred'.
    """
    if defence == "none":
        return None
    record = get(defence)
    full = check(defence, params)
    keys = [*record.tagged, *_extra(record, full)]
    return "-".join([record.tag, *(f"{record.param(k).letter}{_value_text(full[k])}" for k in keys)])


def setting_text(defence: str, params: dict | None = None) -> str:
    """How the chapters write a defence's setting: 'T = 100', 'ε = 8/255, 7 steps'."""
    record = get(defence)
    full = check(defence, params)
    keys = [*record.tagged, *(["steps"] if "steps" in full else [])]
    keys += [k for k in _extra(record, full) if k not in keys]
    out = []
    for k in keys:
        v = full[k]
        # 8/255 reads better than 0.0314
        value = (f"{round(v * 255)}/255" if k == "eps" and float(v * 255).is_integer()
                 else f"{v:.3g}" if isinstance(v, float) else str(v))
        out.append(record.param(k).text.format(value))
    return ", ".join(out)
