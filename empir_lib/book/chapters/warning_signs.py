"""Red flags of a weak evaluation, read from the committed results files (chapter 8).

Two signs, after Carlini et al. (2019) and Tramer et al. (2020):

* an iterative attack (BIM) leaving *more* accuracy than a single step (FGSM)
  of the same size: the iterations are not following a useful gradient;
* an attack crafted on one member alone and *transferred* to the ensemble
  beating the white-box attack on the ensemble itself: the white-box attack
  is differentiating the wrong thing.

The paper's own Table 2 is checked too, labelled as the paper's.
"""
from __future__ import annotations

from collections.abc import Iterable

from ...core import settings
from ...studies import results
from .committed import Root


def iterative_weaker(bim: float | None, fgsm: float | None) -> bool:
    """True when both are known and BIM leaves more accuracy than FGSM."""
    return bim is not None and fgsm is not None and bim > fgsm


def warning_signs(dataset: str, root: Root = None) -> list[str]:
    """The red flags found in ``dataset``'s results files, one sentence each (empty when none)."""
    t, signs = results.table2(dataset, root), []
    for row in ("EMPIR, paper protocol", "EMPIR, adaptive protocol"):
        c = t[row]
        if iterative_weaker(c["bim"], c["fgsm"]):
            signs.append(f"ours, {row}: BIM {c['bim']:.2f} > FGSM {c['fgsm']:.2f} (iterative weaker than one step)")
    p = results.paper_table2(dataset)["empir"]
    if iterative_weaker(p["bim"], p["fgsm"]):
        signs.append(f"*paper*, EMPIR: BIM {p['bim']:.2f} > FGSM {p['fgsm']:.2f} (iterative weaker than one step)")
    ds = settings.get(dataset)
    fp = ds.empir_ids.index(ds.empir_fp)  # the FP member's index in the EMPIR configuration
    present = set(results.names(dataset, "adaptive-select/", root))
    for att in ("fgsm", "pgd"):
        name = f"adaptive-select/{att}-member{fp}"
        white = t["EMPIR, paper protocol"][att]
        if name in present and white is not None:
            transfer = 100 * results.load(dataset, name, root)["adversarial_accuracy"]
            if transfer < white:
                signs.append(f"ours: {att.upper()} crafted on the FP member alone leaves {transfer:.2f}%, "
                             f"below the paper protocol's white-box {white:.2f}% (transfer beats white-box)")
    return signs


def report(datasets: Iterable[str], root: Root = None) -> str:
    """The warning signs of every dataset, as indented text lines."""
    lines = []
    for ds in datasets:
        signs = warning_signs(ds, root)
        lines.append(f"{ds}:" + ("".join(f"\n  - {s}" for s in signs) if signs
                                 else " no warning sign in the files present"))
    return "\n".join(lines)
