"""Chapter 10's gradient-masking measurement (:func:`empir_lib.attack.masking.gradient_masking`) as tables and lines."""
from __future__ import annotations

from collections.abc import Sequence

from .. import plots


def masking_table(rows: Sequence[dict]) -> str:
    """:func:`gradient_masking`'s rows as Markdown."""
    cells_ = [{"member": f"`{r['member']}`", "defence": r["defence"], "accuracy": f"{r['accuracy']:.1f}",
               "saturated": f"{r['saturated']:.1f}", "gap": f"{r['gap']:,.1f}", "zero_ce": f"{r['zero_ce']:.1f}",
               "zero_margin": f"{r['zero_margin']:.1f}", "fgsm_ce": f"{r['fgsm_ce']:.1f}",
               "fgsm_margin": f"{r['fgsm_margin']:.1f}"} for r in rows]
    eps = rows[0]["eps"] if rows else float("nan")
    n = rows[0]["n"] if rows else 0
    return plots.markdown_table(
        cells_, ["member", "defence", "accuracy", "saturated", "gap", "zero_ce", "zero_margin", "fgsm_ce",
                 "fgsm_margin"],
        ["member", "defence", "clean accuracy, %", "softmax saturated, % of images", "median top-two logit gap",
         "zero CE gradient, %", "zero margin gradient, %", f"FGSM \u03b5={eps:g} on CE, accuracy %",
         f"FGSM \u03b5={eps:g} on the margin, accuracy %"]) + f"\n\nOn {n} images of the embedded sample."


def masking_summary(rows: Sequence[dict]) -> list[str]:
    """:func:`gradient_masking`'s rows as one sentence each, every number from the measurement."""
    return [f"{r['member']}: clean {r['accuracy']:.1f}%; CE gradient exactly zero on {r['zero_ce']:.1f}% of the "
            f"images (softmax saturated on {r['saturated']:.1f}%); one FGSM step leaves {r['fgsm_ce']:.1f}% "
            f"accuracy on the cross-entropy and {r['fgsm_margin']:.1f}% on the margin." for r in rows]
