"""The new suite stages, the convergence re-check and the minimal L2 on chosen rows, and the label shares.

    PYTHONPATH=. .venv/bin/python scripts/attack_stages.py mnist stages empir l2 1000
    PYTHONPATH=. .venv/bin/python scripts/attack_stages.py cifar10 stages baseline l2 1000 apgd-t
    PYTHONPATH=. .venv/bin/python scripts/attack_stages.py mnist recheck empir l2 1000
    PYTHONPATH=. .venv/bin/python scripts/attack_stages.py cifar10 recheck seeds/set2/empir linf-8-255 2000
    PYTHONPATH=. .venv/bin/python scripts/attack_stages.py cifar10 recheck defences/pgd-at_original linf-8-255 2000
    PYTHONPATH=. .venv/bin/python scripts/attack_stages.py cifar10 late empir linf-8-255 10000
    PYTHONPATH=. .venv/bin/python scripts/attack_stages.py mnist min_norm empir l2 1000
    PYTHONPATH=. .venv/bin/python scripts/attack_stages.py cifar10 labels
    PYTHONPATH=. .venv/bin/python scripts/attack_stages.py cifar10 status
    PYTHONPATH=. .venv/bin/python scripts/attack_stages.py mnist stages baseline l2 10000 --chain
    PYTHONPATH=. .venv/bin/python scripts/attack_stages.py mnist recheck baseline l2 10000 --chain
    PYTHONPATH=. .venv/bin/python scripts/attack_stages.py mnist promote baseline l2

A job (``empir_lib.studies.suite_checks``) on the first N test images writes
``data/results/<dataset>/suite/<row>-<threat>-<kind>.json`` (``empir-min-norm``
for the minimal L2) with provenance; it resumes from its state in ``data/partial/`` when cut
short.  That folder is committed: a re-check round can outlast a session, and
the next session resumes it at its last finished chunk (a round-5 chunk is
about 15-25 minutes here, ``empir_lib.attack.convergence.chunk_for``);
``status`` lists what it holds for a dataset: each state's stage, survivors
done and left, and breaks so far.
The re-check's base is the row's strongest evaluation (its ``-stages`` file
when there is one); once a re-check has moved the row, the same command runs
the next round (``-recheck2``, four times the suite's budget, and so on) on it.
``late`` runs the stages the suite gained since on the survivors of a row whose
last round converged (``-late-stages``: the 5,000-query Square of a stages job
that was cut to APGD-T), keeping every break the rounds found.
``--chain`` re-runs a row's evaluations beside the quoted ones, on more
images (``empir_lib.studies.chains``: in ``data/partial/chains/``, committed);
``promote`` lands that chain whole once its verdict is final (a break the
quoted chain found and the re-run missed is carried in, ``chains.carry``), and
``status`` lists the chains begun.
``labels`` writes ``data/results/<dataset>/labels/paper-protocol.json``:
for every paper-protocol row of Table 2, the share of its adversarial accuracy
that is clean mistakes moved onto their true label
(``empir_lib.studies.paper_labels``), re-running the attack on the clean
mistakes only where the aggregates do not settle it (``--no-rerun`` skips that,
``--rerun=fgsm,cw`` limits it to those attacks).  A suite job rewrites the dataset's cards
(``empir_lib.studies.cards``) when it ran.
"""
import json
import sys
import time
from pathlib import Path

from empir_lib.attack import cascade_state
from empir_lib.core import provenance, settings
from empir_lib.core.errors import EmpirError
from empir_lib.core.files import write_json
from empir_lib.nets import data, ensemble
from empir_lib.studies import cards, chains, paper_labels, results, seeds, suite_checks

PARTIAL = Path("data/partial")  # committed, unlike runs/: a job's state must outlive the session that ran it


def row_name(row: str, threat: str) -> str:
    """A row's suite file: ``empir``, ``baseline``, a seed set's (``seeds/set2/empir``) or a defence's."""
    if row.startswith(f"{seeds.FOLDER}/"):
        return f"{row}-{threat}"
    if row.startswith(f"{results.DEFENCES_FOLDER}/"):
        return results.suite_name(row.split("/", 1)[1], threat)
    return f"suite/{row}-{threat}"


def job(dataset: str, kind: str, row: str, threat: str, n: int, root: Path | None = None) -> dict:
    """The job's name, base and members; ``root``: the results root its row's evaluations are read from."""
    s = settings.get(dataset)
    if kind == "min_norm":
        if row != "empir":
            raise SystemExit("The minimal L2 is run on EMPIR only.")
        return {"name": "suite/empir-min-norm", "members": s.empir_ids, "threat": "l2", "kind": kind, "n": n}
    base = row_name(row, threat)
    if row.startswith(f"{seeds.FOLDER}/"):  # a seed set's row, e.g. seeds/set2/empir
        members = seeds.sets(dataset)[int(row.split("/")[1].removeprefix("set")) - 1][row.split("/")[2]]
    elif row.startswith(f"{results.DEFENCES_FOLDER}/"):  # another defence's suite row, e.g. defences/pgd-at_original
        if (record := results.find(dataset, base)) is None:
            raise SystemExit(f"{dataset} has no suite row {base}; run 'empir reproduce {dataset} --only {base}' "
                             "first.")
        members = record["members"]
    else:
        members = s.empir_ids if row == "empir" else [s.empir_fp]
    where = _next(dataset, kind, base, root) if kind in ("recheck", "late") else {"name": f"{base}-{kind}",
                                                                                   "base": base}
    return {**where, "members": members, "threat": threat, "kind": kind, "n": n}


def _next(dataset: str, kind: str, base: str, root: Path | None) -> dict:
    # Round 1 re-checks the row's strongest evaluation; a round that moved is re-checked by the next.
    # Late stages continue a converged round.
    if kind == "late":
        name, on = suite_checks.late_base(dataset, base, root)
        return {"name": name, "base": on}
    nxt = suite_checks.next_recheck(dataset, base, root)
    if nxt is None:
        raise SystemExit(f"{dataset} {base}: its last re-check moved less than the tolerance; nothing to do.")
    return {"name": nxt[0], "base": nxt[1]}


def labels(dataset: str, rerun: tuple[str, ...]) -> None:
    out, x, y = {}, None, None
    path = results.results_dir(dataset) / "labels" / "paper-protocol.json"
    before = json.loads(path.read_text()) if path.is_file() else {"rows": {}}
    old = before["rows"]
    for v in old.values():  # files written before re-runs were kept under their own key
        if "rerun" not in v and str(v.get("method", "")).startswith("re-run on the "):
            v["rerun"] = {"moved": v["moved"], "clean_wrong": int(v["method"].split()[3]),
                          "wall_time_s": v["rerun_wall_time_s"]}
    for stem in paper_labels.ROW_STEMS:
        for a in ("cw", "fgsm", "bim", "pgd"):
            name = f"table2/{stem}-{a}"
            r = results.find(dataset, name)
            if r is None:
                continue
            # A re-run kept from an earlier invocation for this very row is reused, not repeated.
            again = old.get(name, {}).get("rerun") if old.get(name, {}).get("adversarial_accuracy") == \
                r["adversarial_accuracy"] else None
            if again is None and a in rerun and not paper_labels.split(r)["exact"]:
                if x is None:
                    x, y = data.load(dataset, "test", None, r["n"])
                again = paper_labels.rerun_wrong(r, ensemble.from_zoo(r["members"], r["rule"]), x, y)
            out[name] = paper_labels.row(r, again)
            print(dataset, name, out[name]["share"], out[name]["method"], flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"dataset": dataset, "rows": out, "provenance": provenance.record(" ".join(["scripts/attack_stages.py",
                                                                                         *sys.argv[1:]])),
              "written": provenance.now()}
    if any("rerun" in v for v in out.values()) and "provenance" in before:  # re-runs may come from there
        record["earlier_provenance"] = before.get("earlier_provenance", before["provenance"])
    write_json(path, record)


# Each job kind and the positional arguments it needs (dataset and kind included), for the usage check.
ARGUMENTS = {"status": 2, "labels": 2, "promote": 4, "stages": 5, "recheck": 5, "late": 5, "min_norm": 5}


def usage(argv: list[str]) -> str | None:
    """Why these arguments are not a job (with the docstring's examples), or None when they are."""
    flags = [a for a in argv if a.startswith("-")]
    pos = [a for a in argv if not a.startswith("-")]
    examples = __doc__.split("\n\n")[1]
    if {"-h", "--help"} & set(flags):
        return examples
    if unknown := [f for f in flags if f not in ("--chain", "--no-rerun") and not f.startswith("--rerun=")]:
        return f"usage: unknown option(s) {', '.join(unknown)}; the options are --chain, --rerun=..., --no-rerun"
    if len(pos) < 2 or pos[1] not in ARGUMENTS:
        return f"usage: the job kind is one of {', '.join(ARGUMENTS)}, after the dataset, e.g.\n{examples}"
    if len(pos) < ARGUMENTS[pos[1]]:
        return f"usage: a {pos[1]} job needs {ARGUMENTS[pos[1]]} arguments, got {len(pos)}, e.g.\n{examples}"
    if ARGUMENTS[pos[1]] == 5 and not pos[4].isdigit():
        return f"usage: the number of test images must be a whole number, not {pos[4]!r}, e.g.\n{examples}"
    return None


def main(argv: list[str]) -> None:
    if (why := usage(argv)) is not None:
        raise SystemExit(why)
    flags, argv = [a for a in argv if a.startswith("--")], [a for a in argv if not a.startswith("--")]
    dataset, kind = argv[0], argv[1]
    chain = chains.root(PARTIAL)
    if kind == "status":  # the unfinished jobs a later session resumes, from their committed state
        for path in sorted([*PARTIAL.glob(f"suite-{dataset}-*.npz"), *chain.glob(f"suite-{dataset}-*.npz")]):
            try:
                print(path, json.dumps(cascade_state.progress(path)), flush=True)
            except EmpirError as e:
                print(path, e, flush=True)
        for c in chains.status(dataset, chain):  # the chains being re-run on more images
            print(f"chain {json.dumps(c)}", flush=True)
        return
    if kind == "labels":
        # --rerun=fgsm,cw re-runs only those attacks' rows (default: all four; --no-rerun: none)
        chosen = next((a.split("=", 1)[1] for a in flags if a.startswith("--rerun=")), "cw,fgsm,bim,pgd")
        labels(dataset, () if "--no-rerun" in flags else tuple(chosen.split(",")))
        return
    if kind == "promote":  # a finished chain replaces the row's quoted evaluations
        moved = chains.promote(dataset, row_name(argv[2], argv[3]), chain)
        print("landed:", *moved, flush=True)
        if c := suite_checks.evaluations(dataset, row_name(argv[2], argv[3]))[-1][1].get("carried"):
            print(f"carried in: {c['images']} break(s) of {c['from']['name']} the re-run missed", flush=True)
        cards.write(dataset)
        return
    row, threat, n = argv[2], argv[3], int(argv[4])
    # --chain: the row's evaluations are re-run beside the quoted ones, landed by 'promote' once final
    root = chain if "--chain" in flags else None
    if root is not None and kind != "min_norm":
        chains.begin(dataset, row_name(row, threat), root)
    j = job(dataset, kind, row, threat, n, root)
    if len(argv) > 5:  # a stages job cut to these new stages, e.g. apgd-t
        j["only"] = argv[5].split(",")
    ens = ensemble.from_zoo(j["members"], "vote")
    x, y = data.load(dataset, "test", None, n)
    prov = provenance.record(" ".join(["scripts/attack_stages.py", *sys.argv[1:]]))
    t0 = time.perf_counter()
    rec, ran = suite_checks.run_job(j, dataset, ens, x, y, results.results_dir(dataset, root),
                                    PARTIAL if root is None else chain, progress=True, prov=prov)
    keys = ("robust_before", "robust_after", "change_points", "converged", "success_rate", "median_l2",
            "median_ci95", "broken_by", "invalid_outputs", "transfer_check")
    print(json.dumps({k: rec[k] for k in keys if k in rec}, indent=1))
    print(f"{j['name']}: {'ran' if ran else 'kept'} in {time.perf_counter() - t0:.1f} s", flush=True)
    if ran and root is None:  # the row's card quotes its strongest evaluation: rewrite the dataset's cards
        cards.write(dataset)
    elif root is not None:
        print(json.dumps(chains.status(dataset, root)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
