"""A row's evaluations re-run on more images beside the quoted ones, and landed whole once final (issue 30, item 8)."""
import json

import numpy as np
import pytest

from empir_lib.attack import convergence, diagnostics, outcomes, suite, targeted
from empir_lib.core.errors import EmpirError
from empir_lib.nets import data, ensemble
from empir_lib.studies import chains, results, suite_checks, worstcase

ROW = "suite/empir-l2"


def _plant(root, name, n=100, robust=10, **record):
    """A results file with real per-image arrays: its first ``robust`` images robust, the rest broken by apgd-ce."""
    path = root / "mnist" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    broken = np.where(np.arange(n) < robust, outcomes.ROBUST, 1)
    per = outcomes.save(path.with_suffix(".npz"), broken, np.zeros(n))
    path.write_text(json.dumps({"n": n, "members": ["m"], "robust_accuracy": robust / n, "per_image": per,
                                "attacks": [{"name": "apgd-ce"}], **record}))


def _link(root, name, base, n=100, robust=10, **record):
    """An evaluation that continues ``base`` (the per-image file it names)."""
    sha = json.loads((root / "mnist" / f"{base}.json").read_text())["per_image"]["sha256"]
    _plant(root, name, n, robust, base={"name": base, "sha256": sha}, **record)


def test_final_says_when_a_chain_may_land(tmp_path):
    def verdict():
        return chains.final(suite_checks.evaluations("mnist", ROW, tmp_path))

    assert chains.final([]) is None
    _plant(tmp_path, ROW)
    _link(tmp_path, f"{ROW}-stages", ROW, robust_after=9)
    assert verdict() is None  # the new stages still need their re-check
    _link(tmp_path, f"{ROW}-recheck", f"{ROW}-stages", robust_after=8, converged=False)
    assert verdict() is None  # it moved: the next round is due
    _link(tmp_path, f"{ROW}-recheck2", f"{ROW}-recheck", robust_after=8, converged=True)
    assert verdict() == "converged"
    _link(tmp_path, f"{ROW}-recheck2", f"{ROW}-recheck", robust_after=7, converged=False)
    for r in range(3, suite_checks.ROUNDS + 1):
        assert verdict() is None
        _link(tmp_path, f"{ROW}{suite_checks.RECHECKS[r - 1]}", f"{ROW}{suite_checks.RECHECKS[r - 2]}",
              robust_after=7 - r, converged=False)
    assert verdict() == "upper bound"  # the last allowed round still moved
    _link(tmp_path, f"{ROW}-stages", ROW, robust_after=0)
    for r in suite_checks.RECHECKS:
        (tmp_path / "mnist" / f"{ROW}{r}.json").unlink()
    assert verdict() == "converged"  # nothing robust: no attack can lower it


def _quoted_and_new(tmp_path):
    """A quoted chain on 100 images (stages, two rounds) and a new one on 1,000 in the chain root (stages)."""
    quoted, chain = tmp_path / "results", tmp_path / "partial" / chains.FOLDER
    _plant(quoted, ROW, n=10000)
    _link(quoted, f"{ROW}-stages", ROW)
    _link(quoted, f"{ROW}-recheck", f"{ROW}-stages", converged=False)
    _link(quoted, f"{ROW}-recheck2", f"{ROW}-recheck", converged=True)
    chains.begin("mnist", ROW, chain, quoted)
    _link(chain, f"{ROW}-stages", ROW, n=1000)
    return quoted, chain


def test_a_finished_chain_replaces_the_quoted_one_in_one_step(tmp_path):
    quoted, chain = _quoted_and_new(tmp_path)
    assert chains.root(tmp_path / "partial") == chain
    suite_file = (quoted / "mnist" / ROW).with_suffix(".npz").read_bytes()
    assert (chain / "mnist" / ROW).with_suffix(".npz").read_bytes() == suite_file  # the copy it continues
    with pytest.raises(EmpirError, match="not final yet"):
        chains.promote("mnist", ROW, chain, quoted)
    assert [n for n, _ in suite_checks.evaluations("mnist", ROW, quoted)][-1] == f"{ROW}-recheck2"  # untouched
    _link(chain, f"{ROW}-recheck", f"{ROW}-stages", n=1000, converged=True, robust_after=3)
    assert chains.status("mnist", chain) == [{"row": ROW, "evaluations": ["suite", "-stages", "-recheck"],
                                              "n": 1000, "robust": 3, "final": "converged"}]
    assert chains.promote("mnist", ROW, chain, quoted) == [f"{ROW}-stages", f"{ROW}-recheck"]
    landed = suite_checks.evaluations("mnist", ROW, quoted)
    assert [r["n"] for _, r in landed] == [10000, 1000, 1000]  # the old second round went with its chain
    assert not (quoted / "mnist" / f"{ROW}-recheck2.json").exists()
    assert (quoted / "mnist" / ROW).with_suffix(".npz").read_bytes() == suite_file
    assert not list((chain / "mnist").rglob("*.*"))  # nothing left behind, the suite file's copy included
    assert chains.status("mnist", chain) == []


def test_a_chain_is_refused_after_the_suite_row_was_re_run_or_on_fewer_images(tmp_path):
    quoted, chain = _quoted_and_new(tmp_path)
    _link(chain, f"{ROW}-recheck", f"{ROW}-stages", n=1000, converged=True)
    (quoted / "mnist" / ROW).with_suffix(".npz").write_bytes(b"re-run")
    with pytest.raises(EmpirError, match="re-run after this chain began"):
        chains.promote("mnist", ROW, chain, quoted)
    with pytest.raises(EmpirError, match="re-run after this chain began"):
        chains.begin("mnist", ROW, chain, quoted)
    quoted, chain = _quoted_and_new(tmp_path / "again")
    _link(chain, f"{ROW}-stages", ROW, n=50)
    _link(chain, f"{ROW}-recheck", f"{ROW}-stages", n=50, converged=True)
    with pytest.raises(EmpirError, match="fewer images replaces nothing"):
        chains.promote("mnist", ROW, chain, quoted)
    assert len(suite_checks.evaluations("mnist", ROW, quoted)) == 4  # the quoted chain stays whole
    with pytest.raises(EmpirError, match="no suite row"):
        chains.begin("mnist", "suite/baseline-l2", chain, quoted)
    with pytest.raises(EmpirError, match="no chain begun"):
        chains.promote("mnist", "suite/empir-linf", chain, quoted)
    quoted, chain = _quoted_and_new(tmp_path / "no-copy")
    (chain / "mnist" / f"{ROW}.json").unlink()  # a chain that lost its suite file's copy continues nothing known
    with pytest.raises(EmpirError, match="no chain begun"):
        chains.promote("mnist", ROW, chain, quoted)
    assert not (chain / "mnist" / f"{ROW}.json").exists()  # and is not given the quoted one's


def test_a_break_the_new_chain_missed_lands_carried_in_with_its_source(tmp_path):
    # A re-run's random starts missed image 10, which the quoted chain's apgd-ce broke: it is carried in.
    quoted, chain = _quoted_and_new(tmp_path)
    _link(chain, f"{ROW}-recheck", f"{ROW}-stages", n=1000, robust=11, robust_after=11, converged=True,
          change_points=0.0)
    old = suite_checks.evaluations("mnist", ROW, quoted)
    assert chains.lost_breaks("mnist", old, suite_checks.evaluations("mnist", ROW, chain), chain, quoted) == \
        [(10, "apgd-ce")]
    chains.promote("mnist", ROW, chain, quoted)
    name, rec = suite_checks.evaluations("mnist", ROW, quoted)[-1]
    assert name == f"{ROW}-recheck"
    source = {"name": f"{ROW}-recheck2", "sha256": old[-1][1]["per_image"]["sha256"]}
    assert rec["attacks"][-1] == {"name": "carried-apgd-ce", "kind": outcomes.CARRIED, "stage": "apgd-ce",
                                  "from": source}
    assert (rec["robust_after"], rec["robust_accuracy"], rec["broken_by"]["carried-apgd-ce"]) == (10, 0.01, 1)
    assert rec["robust_ci95"] == [round(v, 6) for v in outcomes.wilson_interval(10, 1000)]
    assert (rec["converged"], rec["change_points"], rec["carried"]["images"]) == (True, 0.0, 1)  # the round's own
    assert rec["carried"]["from"] == {**source, "n": 100}
    broken = outcomes.load(quoted / "mnist" / f"{name}.json", rec)["broken_by"]
    assert np.flatnonzero(broken == outcomes.ROBUST).tolist() == list(range(10))
    assert broken[10] == len(rec["attacks"])  # the per-image file names the carried stage


def test_carried_breaks_are_neither_doubled_nor_an_ensemble_stage_after_the_members():
    ce = {"name": "apgd-ce", "kind": "apgd", "loss": "ce_mean_prob", "n_iter": 100, "restarts": 3}
    member = {"name": "member-0", "kind": "apgd", "loss": "ce:0", "n_iter": 100, "restarts": 1}
    carried = {"name": "carried-apgd-ce", "kind": outcomes.CARRIED, "stage": "apgd-ce", "from": {}}
    assert [s["name"] for s in convergence.next_round([ce, member, carried])[1]] == \
        ["recheck-apgd-ce", "recheck-member-0"]
    broken = np.array([outcomes.ROBUST, 2, 3])
    assert diagnostics.transfer_check([ce, member, carried], broken)["after_every_ensemble_stage"]
    assert not diagnostics.transfer_check([ce, member, ce], broken)["after_every_ensemble_stage"]


SHORT = [{"name": "apgd-ce", "kind": "apgd", "loss": "ce_mean_prob", "n_iter": 3, "restarts": 1},
         {"name": "apgd-t", "kind": "apgd-t", "loss": targeted.LOSS, "n_iter": 5, "restarts": 1, "targets": 2}]


def test_a_cascade_continues_an_evaluation_with_carried_breaks_but_never_runs_one():
    ens = ensemble.empir("mnist")
    x, y = data.load_sample("mnist")
    x, y = x[:6], y[:6]
    threat = {"norm": "l2", "eps": 2.0}
    first = suite.cascade(ens, x, y, threat, SHORT[:1], progress=False)
    keep = np.flatnonzero(first["broken_by"] == outcomes.ROBUST)
    carried = {"name": "carried-apgd-t", "kind": outcomes.CARRIED, "stage": "apgd-t", "from": {}}
    broken = first["broken_by"].copy()
    broken[keep[0]] = 2  # the carried stage's break
    start = {"broken_by": broken, "norm": first["norm"], "stats": {**first["stats"], carried["name"]: {"seconds": 0}}}
    res = suite.cascade(ens, x, y, threat, [SHORT[0], carried, SHORT[1]], progress=False, start=start)
    assert res["stats"]["apgd-t"]["attacked"] == len(keep) - 1  # the carried image is not attacked again
    assert res["broken_by"][keep[0]] == 2
    with pytest.raises(EmpirError, match="attack kind"):  # a carried stage holds breaks; it has nothing to run
        suite.cascade(ens, x, y, threat, [SHORT[0], carried], progress=False)


def _job(ens, kind, name, base, n):
    return {"name": name, "members": list(ens.names), "threat": "l2", "kind": kind, "n": n, "base": base}


def test_a_real_chain_on_more_images_runs_beside_the_quoted_one_and_lands(tmp_path, monkeypatch):
    ens = ensemble.empir("mnist")
    x, y = data.load_sample("mnist")
    x, y = x[:16], y[:16]
    monkeypatch.setattr(suite, "_suite", lambda ens, threat: list(SHORT))
    quoted, chain = tmp_path / "results", tmp_path / "partial" / chains.FOLDER
    base = suite.cascade(ens, x, y, {"norm": "l2", "eps": 2.0}, SHORT[:1], progress=False)
    rec = worstcase.summary({"members": list(ens.names), "rule": ens.rule, "attacks": SHORT[:1], "n": len(y)},
                            base["broken_by"], base["counts"], base["stats"], y, ens)
    path = quoted / "mnist" / f"{ROW}.json"
    path.parent.mkdir(parents=True)
    rec["per_image"] = outcomes.save(path.with_suffix(".npz"), base["broken_by"], base["norm"])
    results.write_result(path, rec, "mnist", prov={"command": "test"})

    def run(root, kind, n):
        if kind == "stages":
            j = _job(ens, kind, f"{ROW}-stages", ROW, n)
        else:
            j = _job(ens, kind, *suite_checks.next_recheck("mnist", ROW, root), n)
        return worstcase.run_job(j, "mnist", ens, x, y, results.results_dir("mnist", root), tmp_path / "runs",
                                 progress=False, prov={"command": "test"})[0]

    run(quoted, "stages", 8)
    run(quoted, "recheck", 8)
    chains.begin("mnist", ROW, chain, quoted)
    stages = run(chain, "stages", 16)
    assert stages["n"] == 16 and stages["robust_before"] == base["counts"]["robust"]
    rounds = [run(chain, "recheck", 16)]
    while chains.final(suite_checks.evaluations("mnist", ROW, chain)) is None:
        rounds.append(run(chain, "recheck", 16))
    assert [r["n"] for _, r in suite_checks.evaluations("mnist", ROW, quoted)] == [16, 8, 8]  # still quoted
    chains.promote("mnist", ROW, chain, quoted)
    landed = suite_checks.evaluations("mnist", ROW, quoted)
    assert [r["n"] for _, r in landed] == [16] * (2 + len(rounds))
    last = outcomes.load(quoted / "mnist" / f"{landed[-1][0]}.json", landed[-1][1])["broken_by"]
    # Fewer than the last round kept when it missed a break of the quoted chain (carried in).
    assert int(np.sum(last == outcomes.ROBUST)) == landed[-1][1]["robust_after"] <= rounds[-1]["robust_after"]


def test_a_row_whose_name_holds_a_dot_is_copied_whole(tmp_path):
    quoted, chain = tmp_path / "results", tmp_path / "chains"
    row = "defences/empir-fgsm-at_eps0.1-suite-l2"  # "0.1-suite-l2" is not a suffix
    _plant(quoted, row)
    chains.begin("mnist", row, chain, quoted)
    for ext in (".json", ".npz"):
        assert (chain / "mnist" / f"{row}{ext}").read_bytes() == (quoted / "mnist" / f"{row}{ext}").read_bytes()
