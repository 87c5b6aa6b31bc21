"""Threat models, one record each: the worst-case evaluation's L-inf and L2 budgets per dataset (chapter 8).

A :class:`Threat` is the one owner of a threat model's name (the results
files' ``<row>-<threat>`` suffix), its norm, its eps and its label.  Every
dataset with an L2 budget has: L-inf at Table 1's eps (``linf-table1``,
the paper's section 5 setting), L-inf at each further budget of
``settings.suite_linf`` named in 255ths (``linf-8-255``: Tramer et al.'s
CIFAR-10 budget), and L2 at ``settings.l2_budget`` (``l2``).
"""
from __future__ import annotations

from dataclasses import dataclass

from . import settings
from .errors import EmpirError, check_choice

TABLE1 = "linf-table1"
L2 = "l2"
NORMS = ("linf", "l2")


@dataclass(frozen=True)
class Threat:
    """One threat model: ``name`` (as in results files), ``norm`` ('linf' or 'l2'), ``eps`` and its ``label``."""

    name: str
    norm: str
    eps: float
    label: str

    def as_dict(self) -> dict:
        """``{'norm', 'eps'}``: the form the attacks take."""
        return {"norm": self.norm, "eps": self.eps}


def linf_name(eps: float) -> str:
    """The name of an L-inf budget given in 255ths: ``linf_name(8 / 255)`` -> 'linf-8-255'."""
    return f"linf-{round(eps * 255)}-255"


def eps_text(norm: str, eps: float) -> str:
    """A budget as the chapters and cards write it: in 255ths when it is one ('8/255'), else '0.3'."""
    if norm == "linf" and abs(eps * 255 - round(eps * 255)) < 1e-6:
        return f"{round(eps * 255)}/255"
    return f"{eps:.4g}"


def of(dataset: str) -> dict[str, Threat]:
    """Every threat model evaluated for ``dataset``, by name, in the order the chapters show them."""
    s = settings.get(dataset)
    if not s.l2_budget:
        have = [n for n, d in settings.DATASETS.items() if d.l2_budget]
        raise EmpirError(f"no threat models for {dataset!r}; choose one of: {', '.join(have)}.")
    out = [Threat(TABLE1, "linf", float(s.attacks["pgd"]["eps"]), "L-inf, Table 1 eps")]
    out += [Threat(linf_name(eps), "linf", float(eps), f"L-inf {round(eps * 255)}/255") for eps in s.suite_linf]
    out.append(Threat(L2, "l2", float(s.l2_budget), "L2"))
    return {t.name: t for t in out}


def get(dataset: str, name: str) -> Threat:
    """One of :func:`of` by name, or one sentence naming the threat models ``dataset`` has."""
    found = of(dataset)
    return found[check_choice(name, tuple(found), f"threat model for {dataset}")]


def label(name: str) -> str:
    """A threat's label from its name alone (for tables over several datasets): 'L-inf 8/255'."""
    if name == TABLE1:
        return "L-inf, Table 1 eps"
    if name == L2:
        return "L2"
    if name.startswith("linf-") and name.endswith("-255"):
        return f"L-inf {name[5:-4]}/255"
    raise EmpirError(f"{name!r} names no threat model; they look like '{TABLE1}', 'linf-8-255' or '{L2}'.")
