"""One card per evaluated row in RobustBench's layout, and the table a reader compares them in.

RobustBench describes each model by a small JSON file (``model_info/<dataset>/
<threat>/<name>.json``: ``name``, ``link``, ``authors``, ``venue``,
``architecture``, ``additional_data``, ``number_forward_passes``, ``eps``,
``clean_acc``, ``reported``, ``autoattack_acc``, ``external``, ``unreliable``,
``footnote``).  A card here keeps those keys where they mean the same thing,
with two changes a reader must know about:

* ``robust_acc`` instead of ``autoattack_acc``: our number is the worst case of
  the book's suite (chapter 8), judged on the vote the defence deploys, on the
  row's strongest evaluation (the suite, continued with the new stages, then
  re-checked with a doubled budget: :mod:`empir_lib.studies.suite_checks`);
* ``n``, ``robust_ci95`` (95% Wilson interval), ``members``, ``broken_by``
  (the stage that broke each image) and ``converged`` are added, so the card
  says what the number rests on;
* ``flags`` lists the suite's diagnostic flags still open, and
  ``flags_answered`` those the row's stronger evaluations answered
  (:func:`empir_lib.studies.suite_checks.settled_flags`); ``unreliable`` is
  set by an open flag or a number that has not stopped moving.

``reported`` is the paper's own figure for the same model and threat where it
gave one (Table 2's PGD column at Table 1's eps, section 5.2); ``external``
lists published figures by others (Tramer et al. 2020, the public ART
reproduction, Farkya et al. 2023).  Every value is read from the committed
results files, whose names and sha256 are listed under ``sources``.
:func:`build` computes the cards, :func:`write` stores them as
``data/results/cards/<dataset>/<row>-<threat>.json`` (``empir cards``);
:mod:`empir_lib.book.chapters.summary` is the table chapter 7 opens with.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..attack import outcomes
from ..core import files, paper, settings, threats
from ..core.errors import EmpirError, check_choice
from ..core.files import atomic_write
from . import results, suite_checks, transfer_answer

FOLDER = "cards"
EMPIR_LINK = "https://openreview.net/forum?id=HJem3yHKwH"
EMPIR_AUTHORS = "Sanchari Sen, Balaraman Ravindran, Anand Raghunathan"
ARCHITECTURE = {"mnist": "MNISTconv", "cifar10": "CIFARconv", "tiny-imagenet": "AlexNet (Tiny ImageNet)"}

# Published figures by others, as (dataset, row, threat) -> entries.  Sources: Tramer et al. (2020), "On
# adaptive attacks to adversarial example defenses" (CIFAR-10 EMPIR, PGD at 8/255 on the mean
# probability); the public ART reproduction of that attack (1.41%, ../shared/reference/landscape.md);
# Farkya et al. (2023), abstract (their stochastic-quantiser ensemble, PGD at 5/255, "over 50%").
ART_REPRODUCTION_CIFAR10_EPS8 = 1.41
EXTERNAL = {
    ("cifar10", "empir", "linf-8-255"): [
        {"robust_acc": paper.TRAMER_CIFAR10_EPS8, "by": "Tramer et al. 2020 (PGD on the mean probability)"},
        {"robust_acc": ART_REPRODUCTION_CIFAR10_EPS8, "by": "ART's public reproduction of Tramer et al.'s attack"}],
    ("cifar10", "stochastic", "linf-5-255"): [
        {"robust_acc": paper.FARKYA_PGD_5_255, "bound": "lower", "by": "Farkya et al. 2023 (PGD, abstract: over 50%)"}],
}


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _robust_of(record: dict) -> tuple[int, int]:
    """(robust images, n) of a suite, stages or re-check record."""
    if "robust_after" in record:
        return int(record["robust_after"]), int(record["n"])
    return int(round(record["robust_accuracy"] * record["n"])), int(record["n"])


def suite_card(dataset: str, row: str, threat: str, name: str, root: str | os.PathLike | None = None) -> dict:
    """The card of one suite row (``name``: its results file under the dataset, e.g. ``suite/empir-l2``)."""
    evals = suite_checks.evaluations(dataset, name, root)
    if not evals:
        raise EmpirError(f"no results file {name}.json for {dataset}; run 'empir reproduce {dataset}' first.")
    t = threats.get(dataset, threat)
    base = evals[0][1]
    last = evals[-1][1]
    k, n = _robust_of(last)
    lo, hi = outcomes.wilson_interval(k, n)
    # The last evaluation's file holds the whole cascade per image (the suite's stages, then the new ones).
    broken_by = {s: c for s, c in outcomes.stage_counts(last).items() if c}
    # Stopped moving: only a re-check (doubled iterations and restarts, a new seed) can say so, and late
    # stages after it must not have moved it; with nothing robust no attack can lower it.
    converged = suite_checks.converged(evals)
    # A flag the row's stronger evaluations answered is listed apart; only the open ones make it unreliable.
    flags, answered = suite_checks.settled_flags(list(base.get("diagnostics", {}).get("flags", [])), evals)
    # Each later evaluation's transfer check covers the whole cascade so far: the last one says it once.
    tc = transfer_answer.check(evals)
    if tc.get("flag"):
        flag = (f"transfer-only breaks: {tc['images']} images ({100 * tc['share']:.1f}%) broken only by "
                "a single-member or transfer stage")
        # Asked again at the ensemble level with more budget (studies.transfer_answer): answered, or still open.
        ask = transfer_answer.read(dataset, name, root, evals)
        if ask is not None and ask["answered"]:
            answered.append(f"{flag}; answered: {transfer_answer.sentence(ask)}")
        else:
            flags.append(flag if ask is None else f"{flag}; asked again, {transfer_answer.sentence(ask)}")
    one = one_answer(dataset, row, root)
    if one and one["constant"]:
        flags.insert(0, f"constant classifier: answers '{one['class']}' for {100 * one['share']:.0f}% of the "
                        "images; invalid as a defence, its robust accuracy says nothing")
    members = list(base["members"])
    reported = paper.TABLE2[dataset]["empir" if row == "empir" else "baseline"]["pgd"] \
        if dataset in paper.TABLE2 and row in ("empir", "baseline") and threat == threats.TABLE1 else None
    card = {
        "name": _row_name(dataset, row), "link": EMPIR_LINK if row in ("empir", "baseline") else None,
        "authors": EMPIR_AUTHORS if row in ("empir", "baseline") else None,
        "venue": "ICLR 2020" if row in ("empir", "baseline") else None,
        "additional_data": False, "number_forward_passes": len(members), "dataset": dataset,
        "architecture": f"{ARCHITECTURE.get(dataset, dataset)} x{len(members)}" if len(members) > 1
        else ARCHITECTURE.get(dataset, dataset),
        "row": row, "threat": threat, "threat_model": {"linf": "Linf", "l2": "L2"}[t.norm],
        "eps": threats.eps_text(t.norm, t.eps),
        "clean_acc": _pct(base["clean_accuracy"]),
        "reported": None if reported is None else f"{reported:.2f}",
        "robust_acc": _pct(k / n), "robust_ci95": [_pct(lo), _pct(hi)], "n": n,
        "external": EXTERNAL.get((dataset, row, threat), []),
        # RobustBench's 'unreliable': an open flag of the suite's diagnostics, or a number still moving.
        "unreliable": bool(flags) or converged is not True, "converged": converged, "flags": flags,
        "flags_answered": answered,
        "members": members, "broken_by": broken_by,
        "footnote": _footnote(n, base["n"], converged, reported is not None,
                              sum(nm.endswith(suite_checks.RECHECKS) for nm, _ in evals), last.get("carried")),
        "sources": [{"file": f"{dataset}/{nm}.json", "sha256": files.sha256(results.results_dir(dataset, root) /
                                                                         f"{nm}.json")} for nm, _ in evals],
    }
    return card


# The randomised ensemble's expected accuracy (chapter 13): the converged GPU run when it is there
# (studies/expected_gpu), else the CPU run of every stage.
EXPECTED = ("stochastic/expected-gpu", "stochastic/expected-suite-joint")


def expected_card(dataset: str, name: str | None = None, root: str | os.PathLike | None = None) -> dict:
    """The card of a randomised ensemble: its robust value is an *expected* accuracy over the defence's draws.

    Per image, the probability over fresh draws that the vote at the attacker's
    point is right, lowest over the suite's stages, averaged over images
    (:mod:`empir_lib.attack.expected_suite`); the interval covers both the
    draws and the image sampling.  ``name`` defaults to the first of
    :data:`EXPECTED` that exists.
    """
    name = name or next((nm for nm in EXPECTED if results.find(dataset, nm, root) is not None), EXPECTED[-1])
    r = results.find(dataset, name, root)
    if r is None:
        raise EmpirError(f"no results file {name}.json for {dataset}; run 'empir reproduce {dataset} --only "
                         f"stochastic/' first.")
    t = r["threat"]
    members = list(r["members"])
    converged, how, falling, further = r.get("converged"), "", False, ""
    samples, n_iter, lowest = r.get("samples"), r.get("n_iter"), r.get("lowest_by_stage")
    if r.get("kind") == "expected-gpu":  # the quoted setting's run; every point judged again by TensorFlow
        ch = r["chosen"]
        runs = [u for u in r["units"] if u["kind"] == "suite"]
        unit = next(u for u in runs if [u["samples"], u["n_iter"]] == [ch["samples"], ch["n_iter"]])
        samples, n_iter, lowest, converged = ch["samples"], ch["n_iter"], unit["lowest_by_stage"], ch["converged"]
        prev = next((u for u in runs if [u["samples"], u["n_iter"]] == ch["from"]), None)
        falling = prev is not None and prev.get("doubled", {}).get("hi", 0) < 0
        how = "every stage but Square, run on a GPU in JAX and judged again by the Keras ensemble; "
        if f := r.get("further"):  # a further doubling on the first images is the latest word on "still falling"
            d = f["doubled"]
            falling = d["hi"] < 0
            further = (f"A further doubling (S = {f['samples']}, N = {f['n_iter']}, its own seed) on the first "
                       f"{f['n']:,} images moved it by {100 * d['diff']:+.2f} points (paired 95% interval "
                       f"{100 * d['lo']:+.2f} to {100 * d['hi']:+.2f}). ")
    return {
        "name": "Ensemble of stochastic-quantiser members (Farkya et al. 2023's idea), majority vote",
        "link": None, "authors": None, "venue": None, "additional_data": False,
        "number_forward_passes": len(members), "dataset": dataset,
        "architecture": f"{ARCHITECTURE.get(dataset, dataset)} x{len(members)}",
        "row": "stochastic", "threat": t["name"], "threat_model": {"linf": "Linf", "l2": "L2"}[t["norm"]],
        "eps": threats.eps_text(t["norm"], t["eps"]),
        "clean_acc": _pct(r["clean"]), "reported": None,
        "robust_acc": _pct(r["robust"]), "robust_ci95": [_pct(max(0.0, r["robust_ci95"][0])),
                                                         _pct(r["robust_ci95"][1])], "n": int(r["n"]),
        "external": EXTERNAL.get((dataset, "stochastic", t["name"]), []),
        "unreliable": converged is not True, "converged": converged, "flags": [], "flags_answered": [],
        "members": members, "broken_by": {k: v for k, v in lowest.items() if v},
        "footnote": f"Randomised: robust_acc is the expected accuracy over {r['draws']} fresh draws at each "
                    f"stage's point (EOT with {samples} samples, {n_iter} iterations; {how}lowest over "
                    f"stages per image); broken_by counts the stage that took each image lowest. "
                    f"{'' if converged else 'Not yet shown to have stopped moving: an upper bound. '}"
                    f"{'Within the half-point rule but still falling: an upper bound. ' if falling else ''}"
                    f"{further}On the first {int(r['n']):,} test images.",
        "sources": [{"file": f"{dataset}/{name}.json",
                     "sha256": files.sha256(results.results_dir(dataset, root) / f"{name}.json")}],
    }


def _row_name(dataset: str, row: str) -> str:
    return {"empir": "EMPIR (2 LP members + FP member, majority vote)",
            "baseline": "Full-precision baseline (EMPIR's FP member)"}.get(row) or settings.row_label(dataset, row)


def _footnote(n: int, n_base: int, converged: bool | None, reported: bool, rounds: int = 1,
              carried: dict | None = None) -> str:
    parts = ["Robust accuracy: the worst case of the book's attack suite (chapter 8) on the vote, "
             "not AutoAttack."]
    if n != n_base:
        parts.append(f"The strongest evaluation covers the first {n:,} test images; the suite alone "
                     f"covered {n_base:,}.")
    how = ("with a doubled budget" if rounds <= 1
           else f"in {rounds} rounds, the last with {2 ** rounds} times the budget")
    last = f", and no round follows ({suite_checks.ROUNDS} at most)." if rounds >= suite_checks.ROUNDS else "."
    parts.append({True: f"Re-attacked {how} and a new seed: moved less than 0.1 point.",
                  False: f"Re-attacked {how}: it still moved, so this is an upper bound{last}",
                  None: "Convergence not measured: an upper bound."}[converged])
    if carried:  # chains.carry: a break an earlier evaluation on fewer images found and the re-run missed
        parts.append(f"{carried['images']} break(s) carried in from the {carried['from']['n']:,}-image evaluation "
                     f"it replaced ({carried['from']['name']} at commit {carried['provenance']['git_commit'][:7]}).")
    if reported:
        parts.append("'reported' is the paper's PGD column of Table 2 (its own protocol: the model's "
                     "labels, the mean probability, 40 steps).")
    return " ".join(parts)


CONSTANT_SHARE = 0.95  # a network answering one class for this share of the images is flagged as constant


def one_answer(dataset: str, row: str, root: str | os.PathLike | None = None) -> dict | None:
    """The class a row's network gives most often under the paper protocol, and its share of the test images.

    Read from the confusion matrices (true class by predicted class) of the
    row's paper-protocol files, taking the attack whose top class has the
    smallest share (a network that answers one class under every attack is
    one that answers it always).  Returns ``{'class', 'share', 'attack',
    'constant'}``, ``constant`` when the share is at least
    :data:`CONSTANT_SHARE`; None while no file with a confusion matrix exists.
    A constant classifier keeps about the images of its one class under any
    attack, so its robust accuracy is the class's share of the test set
    (10% on CIFAR-10), and it says nothing about robustness.
    """
    best = None
    for attack in results.ATTACK_COLUMNS:
        r = results.find(dataset, f"{results.paper_protocol_stem(row)}-{attack}", root)
        if r is None or "confusion" not in r:
            continue
        counts = np.asarray(r["confusion"]).sum(axis=0)
        share = float(counts.max() / counts.sum())
        if best is None or share < best["share"]:
            k, names = int(counts.argmax()), settings.get(dataset).class_names
            best = {"class": names[k] if names else str(k), "share": share, "attack": attack}
    if best is not None:
        best["constant"] = best["share"] >= CONSTANT_SHARE
    return best


def rows(dataset: str, root: str | os.PathLike | None = None) -> list[tuple[str, str, str]]:
    """Every evaluated suite row of ``dataset`` as (row, threat, results name), present files only."""
    check_choice(dataset, tuple(settings.DATASETS), "dataset")
    if not settings.get(dataset).l2_budget:
        return []  # a dataset the suite does not evaluate (the paper's ImageNet)
    out = [(row, threat, results.suite_name(row, threat)) for threat in threats.of(dataset)
           for row in results.PAPER_ROWS]
    for name in results.names(dataset, f"{results.DEFENCES_FOLDER}/", root):
        if "-suite-" in name:
            row, threat = name.removeprefix(f"{results.DEFENCES_FOLDER}/").split("-suite-", 1)
            if threat in threats.of(dataset):  # not '<threat>-stages' or '-recheck': the row's later evaluations
                out.append((row, threat, name))
    return [(r, t, nm) for r, t, nm in out if results.find(dataset, nm, root) is not None]


def build(dataset: str, root: str | os.PathLike | None = None) -> dict[str, dict]:
    """Every card of ``dataset``, by file stem (``<row>-<threat>``)."""
    out = {f"{row}-{threat}": suite_card(dataset, row, threat, name, root) for row, threat, name in
           rows(dataset, root)}
    if any(results.find(dataset, nm, root) is not None for nm in EXPECTED):
        card = expected_card(dataset, root=root)
        out[f"stochastic-{card['threat']}"] = card
    return out


def cards_dir(dataset: str, root: str | os.PathLike | None = None) -> Path:
    """Where the cards of ``dataset`` are stored: ``data/results/cards/<dataset>/``."""
    return Path(root or results.RESULTS_DIR) / FOLDER / dataset


def write(dataset: str, root: str | os.PathLike | None = None) -> list[Path]:
    """Write :func:`build`'s cards (one JSON each, atomically) and remove cards whose row is gone."""
    out_dir = cards_dir(dataset, root)
    out_dir.mkdir(parents=True, exist_ok=True)
    made = build(dataset, root)
    paths = []
    for stem, card in made.items():
        path = out_dir / f"{stem}.json"
        text = json.dumps(card, indent=2) + "\n"
        atomic_write(path, lambda tmp, text=text: tmp.write_text(text))
        paths.append(path)
    for stale in out_dir.glob("*.json"):
        if stale.stem not in made:
            stale.unlink()
    return paths


def read(dataset: str, root: str | os.PathLike | None = None) -> dict[str, dict]:
    """The stored cards of ``dataset`` by stem (empty when none are written)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(cards_dir(dataset, root).glob("*.json"))}
