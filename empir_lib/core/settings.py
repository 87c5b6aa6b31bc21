"""Every dataset's settings, in one place, and the zoo's member ids.

One :class:`DatasetSettings` per dataset (MNIST, CIFAR-10, Tiny ImageNet and
full ImageNet) holds what the other modules need to know about it: the input
shape and classes, the splits, the network, the offline archive, Table 1's
attack parameters, the training recipe, the members the zoo trains, the
paper's EMPIR configuration (and so which member is full precision), the size
of the embedded sample and the second eps of the PGD rows.  The per-dataset
tables the other modules read (``ATTACK_PRESETS``, ``RECIPES``,
``EMPIR_MEMBERS``, ...) are views of these, built below; they have no second
name elsewhere.

A zoo id is built by :func:`member_id` and read back by
:func:`parse_member_id`, nowhere else; whether a member is full precision is
answered from its (wbits, abits) by :func:`is_full_precision`, never from
its name.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import defences
from .errors import FULL_PRECISION, EmpirError, check_bits, check_choice

__all__ = ["FULL_PRECISION", "DatasetSettings", "DATASETS", "get", "member_id", "parse_member_id",
           "parse_precision", "precision_tag", "is_full_precision"]

SPLITS = ("train", "test")

# Every CW attack of the original code (the original code, appendix section 5,
# book/appendix_original_code.ipynb): one binary-search step, 50 iterations.
CW_DEFAULTS = {"binary_search_steps": 1, "max_iterations": 50, "learning_rate": 0.1, "initial_const": 10.0,
               "confidence": 0.0, "abort_early": True, "batch_size": 100}

# The original's ImageNet eps is 0.1 in normalised units (the original code, appendix section 7.8,
# book/appendix_original_code.ipynb); the per-channel std of about 0.226 x 255 turns that into
# about 5.7/255 in [0, 1].
IMAGENET_STD = 0.226
TINY_EPS = 0.1 * IMAGENET_STD

# The wbits x abits grid of Figures 1 and 3a.
GRID = [(w, a) for w in (1, 2, 4) for a in (1, 2, 4)]
EPS8 = 8 / 255


def _l_inf(eps: float, eps_iter: float, pgd_iter: int = 40) -> dict:
    """Table 1's FGSM, BIM and PGD parameters, with the original's CW defaults."""
    return {"fgsm": {"eps": eps}, "bim": {"eps": eps, "eps_iter": eps_iter, "nb_iter": 40},
            "pgd": {"eps": eps, "eps_iter": eps_iter, "nb_iter": pgd_iter}, "cw": dict(CW_DEFAULTS)}


@dataclass(frozen=True)
class DatasetSettings:
    """What the library knows about one dataset.

    ``empir`` and ``zoo`` list members as ``(wbits, abits, seed)`` (``zoo``
    may add a fourth entry, the member's own epochs); ``second_eps`` is
    ``(folder, eps, on all n images?)`` for the PGD rows at a smaller eps.
    """

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    arch: str
    recipe: dict
    splits: tuple[str, ...] = SPLITS
    archive: tuple[str, str] | None = None
    attacks: dict = field(default_factory=dict)
    empir: tuple = ()
    zoo: tuple = ()
    sample_size: int | None = None
    second_eps: tuple | None = None
    class_names: tuple[str, ...] = ()
    # The worst-case suite's threat models besides L-inf at Table 1's eps (attacker's
    # choices, chapter 8): further L-inf budgets, and the L2 budget of the CW column.
    suite_linf: tuple[float, ...] = ()
    l2_budget: float | None = None
    # How the zoo stores a member: a Keras file, or float16 weights (AlexNets, to fit the zoo's size budget).
    storage: str = "keras"
    # Independent training seeds of the EMPIR configuration (the seed study): each set is
    # (wbits, abits, seed[, epochs]) per member, in ``empir``'s order, no member shared
    # between sets; the first set is ``empir`` itself, its FP member the FP baseline.
    seed_sets: tuple = ()
    # Table 2's other defences (section 5.3): rows of (row key, members), each member
    # (wbits, abits, seed, defence, params); the paper's row key in paper.TABLE2_DEFENCES is
    # the part before "_" ("fgsm-at_eps0.1" is our extra row beside the paper's eps).  A sixth
    # entry is the member's own epochs.  ``empir zoo build --defended`` trains in this order.
    defence_rows: tuple = ()

    @property
    def defended(self) -> list[tuple]:
        """Every defended member of :attr:`defence_rows` once, as (wbits, abits, seed, defence, params)."""
        seen = {}
        for _, specs in self.defence_rows:
            for spec in specs:
                seen.setdefault(defended_id(self.name, spec), spec)
        return list(seen.values())

    def defence_row_ids(self) -> dict[str, list[str]]:
        """Each defence row's members by zoo id, in the row's order (low precision first)."""
        return {row: [defended_id(self.name, spec) for spec in specs] for row, specs in self.defence_rows}

    def seed_set_ids(self) -> list[list[str]]:
        """Each seed set's members by zoo id, in the EMPIR configuration's order (low precision first)."""
        return [[member_id(self.name, w, a, seed) for w, a, seed, *_ in members] for members in self.seed_sets]

    @property
    def empir_ids(self) -> list[str]:
        """The paper's EMPIR members by zoo id, low-precision members first."""
        return [member_id(self.name, w, a, s) for w, a, s in self.empir]

    @property
    def empir_fp(self) -> str:
        """The zoo id of the EMPIR configuration's full-precision member (decided by its precision)."""
        return next(member_id(self.name, w, a, s) for w, a, s in self.empir if is_full_precision(w, a))

    @property
    def empir_lp(self) -> list[str]:
        """The zoo ids of the EMPIR configuration's low-precision members."""
        return [member_id(self.name, w, a, s) for w, a, s in self.empir if not is_full_precision(w, a)]


FP = (FULL_PRECISION, FULL_PRECISION)


def _defended(w: int, a: int, seed: int, defence: str, params: dict, epochs: int | None = None) -> tuple:
    return (w, a, seed, defence, params) + ((epochs,) if epochs else ())


def _fgsm_rows(empir: tuple, eps: float, suffix: str = "") -> tuple:
    """The FGSM-adversarial-training row (FP member) and EMPIR built from FGSM-trained members."""
    fp = _defended(*FP, 1, "fgsm-at", {"eps": eps})
    lps = tuple(_defended(w, a, s, "fgsm-at", {"eps": eps}) for w, a, s in empir if (w, a) != FP)
    return ((f"fgsm-at{suffix}", (fp,)), (f"empir-fgsm-at{suffix}", (*lps, fp)))

MNIST = DatasetSettings(
    "mnist", (28, 28, 1), 10, "mnist_conv",
    recipe={"epochs": 6, "batch_size": 128, "lr": 1e-3, "label_smoothing": 0.0},
    archive=("mnist.npz", "06af5dfe73b70e3bc1c36439982b18a8d76803db9b544f6fdf838a37fbb01b64"),
    # Table 1 and the original's argparse defaults (the original code, appendix section 5).
    attacks=_l_inf(0.3, 0.01),
    # Table 2 and the README of the original code: two a4w2 members and one FP member.
    empir=((2, 4, 1), (2, 4, 2), (*FP, 1)),
    # The FP baseline, the grid (seed 1, the recipe's epochs), then the extra FP and a4w2
    # members of the Figure 4 sweep (up to three of each).  Two members of the same
    # precision get distinct seeds (the original would have trained them identically:
    # the original code, appendix section 3).
    zoo=((*FP, 1), *((w, a, 1) for w, a in GRID), (2, 4, 2), (*FP, 2), (*FP, 3), (2, 4, 3)),
    # Figure 4's extra members (a4w2 s3, FP s2 and s3) start the second and third sets.
    seed_sets=(((2, 4, 1), (2, 4, 2), (*FP, 1)), ((2, 4, 3), (2, 4, 4), (*FP, 2)),
               ((2, 4, 5), (2, 4, 6), (*FP, 3))),
    sample_size=500,
    second_eps=("eps8", EPS8, False),
    # 2.0: the usual MNIST L2 budget (Croce & Hein 2020).
    l2_budget=2.0,
    # The paper's settings: T = 100, lambda = 100, eps = 0.3.  Beside lambda = 100 on each image's
    # loss (Ross & Doshi-Velez's equation), lambda = 100 / 128: the same penalty written on the
    # batch-mean loss, as many implementations do (the mean divides each image's gradient by the
    # batch size, 128); lambda = 100 per image drives the logits towards a uniform prediction.
    defence_rows=(("distillation", (_defended(*FP, 1, "distillation", {"temperature": 100.0}),)),
                  ("igr", (_defended(*FP, 1, "igr", {"lam": 100.0}),)),
                  *_fgsm_rows(((2, 4, 1), (2, 4, 2), (*FP, 1)), 0.3),
                  ("igr_batchmean", (_defended(*FP, 1, "igr", {"lam": 100.0 / 128}),))),
)

_CIFAR_EMPIR = ((4, 2, 2), (2, 2, 2), (*FP, 1))
# The FGSM-adversarial-training row and its EMPIR row at the paper's eps, trained in that order.
_CIFAR_FGSM = _fgsm_rows(_CIFAR_EMPIR, 0.3)

CIFAR10 = DatasetSettings(
    "cifar10", (32, 32, 3), 10, "cifar_conv",
    recipe={"epochs": 15, "batch_size": 128, "lr": 1e-3, "label_smoothing": 0.1},
    archive=("cifar-10-jpg.tar.gz", "cfad878d779b53aac9f135c9b76d6eeec73f74a1b2b93dbbb6a631788b1ec712"),
    attacks=_l_inf(0.1, 0.01),
    empir=_CIFAR_EMPIR,
    # The EMPIR pair is trained longer (40 epochs) than the grid: at 15 epochs its
    # training accuracy was still rising by about a point an epoch.
    zoo=((*FP, 1), *((w, a, 1) for w, a in GRID), (4, 2, 2, 40), (2, 2, 2, 40)),
    # Seed 1 of a2w4 and a2w2 is the grid's (15 epochs): the 40-epoch pair starts at seed 2.
    seed_sets=(_CIFAR_EMPIR, ((4, 2, 3, 40), (2, 2, 3, 40), (*FP, 2)), ((4, 2, 4, 40), (2, 2, 4, 40), (*FP, 3))),
    sample_size=500,
    # Tramer et al.'s 8/255, on all n images: that setting comes from CIFAR-10.
    second_eps=("eps8", EPS8, True),
    # 8/255 and L2 0.5: the CIFAR-10 benchmark budgets (Tramer et al. 2020; RobustBench).
    suite_linf=(EPS8,),
    l2_budget=0.5,
    # The paper's eps = 0.3 (its section 5.3), and beside it Table 1's CIFAR-10 eps, 0.1: the budget
    # the rows are attacked at (0.3 in [0, 1] pixels erases most of a CIFAR-10 image).  PGD
    # adversarial training: Madry et al.'s 7 steps, for 8 epochs rather than the recipe's 15
    # (each epoch costs about 8 plain ones: 2-core CPU budget).  Ordered by what to train first.
    defence_rows=(_CIFAR_FGSM[0],
                  ("pgd-at_eps0.1", (_defended(*FP, 1, "pgd-at", {"eps": 0.1}, 8),)),
                  _CIFAR_FGSM[1],
                  # PGD training at 0.1 stayed at chance (its loss never left ln 10 in 8 epochs): Madry
                  # et al.'s CIFAR-10 budget, 8/255, gives the claim a PGD-trained network to beat.
                  ("pgd-at_eps8", (_defended(*FP, 1, "pgd-at", {"eps": EPS8}, 8),)),
                  ("pgd-at", (_defended(*FP, 1, "pgd-at", {"eps": 0.3}, 8),)),
                  *_fgsm_rows(_CIFAR_EMPIR, 0.1, "_eps0.1"),
                  # The original code's PGD training (its named recipe: half clean loss, 40 steps of
                  # 0.01 against the model's own predictions) at the paper's eps: does it explain the
                  # paper's 73.55% clean accuracy where Madry's recipe collapsed?  About 5x the cost
                  # of the 7-step rows per epoch.
                  ("pgd-at_original", (_defended(*FP, 1, "pgd-at",
                                                 {"eps": 0.3, **defences.RECIPES["pgd-at"]["original"]}, 8),))),
    class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
)

TINY_IMAGENET = DatasetSettings(
    "tiny-imagenet", (64, 64, 3), 200, "alexnet_tiny",
    # The stand-in for the paper's ImageNet row: random crops and flips, as the original's
    # tensorpack pipeline did for ImageNet (without its constant "lighting" offset: the
    # original code, appendix section 3), a cosine learning-rate decay because a 2-core CPU
    # affords only a few epochs, and AlexNet at a quarter of its width: about 660 images/s
    # for FP and 600 for a2w2 on 2 cores, against 240 / 210 at half width
    # (benchmarks/README.md, "Training").
    recipe={"epochs": 10, "batch_size": 128, "lr": 1e-3, "label_smoothing": 0.0,
            "augment": "crop-flip", "lr_schedule": "cosine", "arch_kwargs": {"width": 0.25}},
    archive=("tiny-imagenet-200.tar.gz", "513436d53eb30679b47b0205e8dad9d7fb30e2a6173aa056a48e0065f202e258"),
    attacks=_l_inf(TINY_EPS, 0.01 * IMAGENET_STD, pgd_iter=5),
    # The paper's ImageNet configuration (a2w2, a4w4, FP), at the recipe's 10 epochs.
    empir=((2, 2, 1), (4, 4, 1), (*FP, 1)),
    zoo=((*FP, 1), (2, 2, 1), (4, 4, 1)),
    sample_size=200,
    storage="float16",
    second_eps=("eps4", 4 / 255, True),
    # 4/255, the usual ImageNet-like budget; L2 1.0 is CIFAR-10's 0.5 per pixel scaled by
    # sqrt(4), as 64x64x3 images have four times CIFAR-10's pixels.
    suite_linf=(4 / 255,),
    l2_budget=1.0,
)

IMAGENET = DatasetSettings(
    "imagenet", (224, 224, 3), 1000, "alexnet",
    # Full ImageNet (224 pixels, 1000 classes, full-width AlexNet) streams from its folder
    # layout; not run here (a 2-core CPU trains it at about 25 images/s).
    recipe={"epochs": 90, "batch_size": 128, "lr": 1e-3, "label_smoothing": 0.0,
            "augment": "crop-flip", "lr_schedule": "cosine"},
    splits=("train", "val"),
    storage="float16",
)

DATASETS: dict[str, DatasetSettings] = {d.name: d for d in (MNIST, CIFAR10, TINY_IMAGENET, IMAGENET)}


def get(dataset: str) -> DatasetSettings:
    """The settings of ``dataset``, or one sentence naming the datasets there are."""
    return DATASETS[check_choice(dataset, tuple(DATASETS), "dataset")]


# --- zoo ids: built and parsed here only --------------------------------------------------


def row_key(row: str) -> str:
    """The paper's Table 2 row key of one of our rows: 'fgsm-at_eps0.1' -> 'fgsm-at'."""
    return row.split("_", 1)[0]


def row_defence(key: str) -> tuple[defences.Defence, bool]:
    """The registered defence behind a row key, and whether the row is EMPIR of members trained with it."""
    empir_of = key.startswith("empir-")
    return defences.get(key.removeprefix("empir-")), empir_of


def row_setting(dataset: str, row: str) -> str:
    """A defence row's training setting: 'T = 100', '\u03b5 = 0.1, 7 steps', '\u03b5 = 8/255, 7 steps'."""
    ids = get(dataset).defence_row_ids()
    if row not in ids:
        raise EmpirError(f"{dataset} has no defence row {row!r}; its rows: {', '.join(ids)}.")
    _, _, _, defence, params = dict(get(dataset).defence_rows)[row][-1][:5]  # the FP member comes last
    return defences.setting_text(defence, params)


def row_label(dataset: str, row: str) -> str:
    """A Table 2 row's name with its training setting: 'FGSM adversarial training (\u03b5 = 0.3)' (section 5.3)."""
    if row in ("baseline", "empir"):
        return {"baseline": "baseline FP", "empir": "EMPIR"}[row]
    record, empir_of = row_defence(row_key(row))
    name = f"EMPIR of {record.trained} members" if empir_of else record.label
    return f"{name} ({row_setting(dataset, row)})"


def is_full_precision(wbits: int | list | tuple, abits: int | list | tuple) -> bool:
    """True when every weight and activation precision (ints or per-layer lists) is full precision."""
    bits = [*(wbits if isinstance(wbits, (list, tuple)) else [wbits]),
            *(abits if isinstance(abits, (list, tuple)) else [abits])]
    return all(int(b) == FULL_PRECISION for b in bits)


def precision_tag(wbits: int | list | tuple, abits: int | list | tuple) -> str:
    """'fp' or the paper's 'a4w2' naming (per-layer lists joined with '-')."""
    def text(b: int | list | tuple) -> str:
        return "-".join(map(str, b)) if isinstance(b, (list, tuple)) else str(b)

    return "fp" if is_full_precision(wbits, abits) else f"a{text(abits)}w{text(wbits)}"


def member_id(dataset: str, wbits: int | list | tuple, abits: int | list | tuple, seed: int,
              defence: str | None = None) -> str:
    """The zoo id of a member: ``member_id('mnist', 2, 4, 1)`` -> 'mnist-a4w2-s1'.

    ``defence`` is a defence's tag (:func:`empir_lib.core.defences.tag`), appended:
    ``member_id('mnist', 32, 32, 1, 'igr-l100')`` -> 'mnist-fp-s1-igr-l100'.
    """
    return f"{dataset}-{precision_tag(wbits, abits)}-s{seed}" + (f"-{defence}" if defence else "")


_TAG = r"(?P<tag>fp|a(?P<abits>\d+(?:-\d+)*)w(?P<wbits>\d+(?:-\d+)*))"
# A training tag: a defence (igr-l100, or with more settings pgdat-e0.3-n40-a0.01-w0.5-ypred) or a
# jointly trained member, numbered (joint0-l0.5).
_DEFENCE_TAG = r"[a-z]+\d*(?:-[a-z][0-9a-z.+]*(?:e-\d+)?)+"
_ID = re.compile(rf"^(?P<dataset>.+?)-{_TAG}-s(?P<seed>\d+)(?:-(?P<defence>{_DEFENCE_TAG}))?$")


def _bits(text: str | None, what: str) -> int | list[int]:
    if text is None:
        return FULL_PRECISION
    values = [check_bits(int(b), what) for b in text.split("-")]
    return values[0] if len(values) == 1 else values


def defended_id(dataset: str, spec: tuple) -> str:
    """The zoo id of a defended member (wbits, abits, seed, defence, params)."""
    w, a, seed, defence, params = spec[:5]
    return member_id(dataset, w, a, seed, defences.tag(defence, params))


def parse_member_id(member: str) -> tuple[str, int | list[int], int | list[int], int]:
    """(dataset, wbits, abits, seed) of a zoo id: the inverse of :func:`member_id` (a defence tag is allowed)."""
    found = _ID.match(member) if isinstance(member, str) else None
    if not found:
        raise EmpirError(f"{member!r} is not a zoo id (it names no precision or no seed); zoo ids look "
                         "like 'mnist-a4w2-s1' or 'mnist-fp-s1'.")
    return (found["dataset"], _bits(found["wbits"], "wbits"), _bits(found["abits"], "abits"),
            int(found["seed"]))


def defence_tag(member: str) -> str | None:
    """The defence tag of a zoo id ('mnist-fp-s1-igr-l100' -> 'igr-l100'), None for plain training."""
    found = _ID.match(member) if isinstance(member, str) else None
    if not found:
        parse_member_id(member)  # raises the one-sentence error
    return found["defence"]


def parse_precision(member: str) -> tuple[int, int]:
    """(wbits, abits) from a zoo id or a tag: 'mnist-a4w2-s1' -> (2, 4), 'fp' -> (32, 32)."""
    found = re.fullmatch(_TAG, member) if isinstance(member, str) else None
    if found:
        return _bits(found["wbits"], "wbits"), _bits(found["abits"], "abits")
    return parse_member_id(member)[1:3]


# --- the per-dataset views the other modules read (one name each: settings.X) -----------------

INPUT_SHAPES = {n: d.input_shape for n, d in DATASETS.items()}
NUM_CLASSES = {n: d.num_classes for n, d in DATASETS.items()}
ARCH_FOR_DATASET = {n: d.arch for n, d in DATASETS.items()}
# The offline copies and their sha256 (shared/datasets/README.md).
ARCHIVES = {n: d.archive for n, d in DATASETS.items() if d.archive}
RECIPES = {n: d.recipe for n, d in DATASETS.items()}
ATTACK_PRESETS = {n: d.attacks for n, d in DATASETS.items() if d.attacks}
EMPIR_MEMBERS = {n: d.empir_ids for n, d in DATASETS.items() if d.empir}
ZOO_MEMBERS = {n: list(d.zoo) for n, d in DATASETS.items() if d.zoo}
SAMPLE_SIZES = {n: d.sample_size for n, d in DATASETS.items() if d.sample_size}
SECOND_EPS = {n: d.second_eps for n, d in DATASETS.items() if d.second_eps}
# Members of these datasets are stored as float16 weights (half the bytes of
# float32) so that three AlexNets fit the zoo's size budget beside the others.
FLOAT16_DATASETS = tuple(n for n, d in DATASETS.items() if d.storage == "float16")
# The datasets of the in-memory loaders and of ``empir reproduce`` (full ImageNet streams).
IN_MEMORY = tuple(ARCHIVES)
