"""Transfer-only breaks asked again at the ensemble level (empir_lib.studies.transfer_answer), and what the card
and chapter 8 say of the answer."""
import json

import numpy as np
import pytest

from empir_lib.attack import outcomes
from empir_lib.book.chapters import adaptive
from empir_lib.core import settings
from empir_lib.core.errors import EmpirError
from empir_lib.nets import data
from empir_lib.nets import ensemble as ens_mod
from empir_lib.studies import cards, transfer_answer

ROW = "suite/empir-l2"
ATTACKS = [{"name": "apgd-ce", "kind": "apgd", "loss": "ce_mean_prob", "n_iter": 2, "restarts": 1},
           {"name": "member-0", "kind": "apgd", "loss": "ce_member:0", "n_iter": 2, "restarts": 1},
           {"name": "recheck-apgd-ce", "kind": "apgd", "loss": "ce_mean_prob", "n_iter": 4, "restarts": 2}]


@pytest.fixture(scope="module")
def empir():
    ens = ens_mod.from_zoo(settings.get("cifar10").empir_ids, "vote")
    x, y = data.load_sample("cifar10", 40)
    return ens, x, y


def write_row(root, ens, x, y, flagged=(3, 7, 11)):
    """A suite row and its re-check on the sample images: some images broken only by member-0."""
    folder = root / "cifar10" / "suite"
    folder.mkdir(parents=True, exist_ok=True)
    pred = ens_mod.predict(ens, x)
    broken_by = np.where(pred == y, outcomes.ROBUST, outcomes.CLEAN).astype(np.int8)
    right = np.flatnonzero(pred == y)
    broken_by[right[list(flagged)]] = 2
    for name, attacks in ((ROW, ATTACKS[:2]), (f"{ROW}-recheck", ATTACKS)):
        record = {"n": len(y), "members": list(ens.names), "threat": {"name": "l2", "norm": "l2", "eps": 0.5},
                  "attacks": attacks, "clean_accuracy": float(np.mean(pred == y)),
                  "robust_accuracy": float(np.mean(broken_by == outcomes.ROBUST)),
                  "broken_by": outcomes.counts(broken_by, [a["name"] for a in attacks]),
                  "robust_after": int(np.sum(broken_by == outcomes.ROBUST)), "converged": True,
                  "transfer_check": {"images": len(flagged), "share": len(flagged) / len(y), "flag": True},
                  "diagnostics": {"flags": []}}
        record["per_image"] = outcomes.save(folder / f"{name.split('/')[1]}.npz", broken_by, np.zeros(len(y)))
        (folder / f"{name.split('/')[1]}.json").write_text(json.dumps(record))
    return right[list(flagged)]


def test_the_flagged_images_are_attacked_again_at_the_ensemble_level(empir, tmp_path):
    ens, x, y = empir
    idx = write_row(tmp_path, ens, x, y)
    card = cards.suite_card("cifar10", "empir", "l2", ROW, tmp_path)
    assert card["flags"] == ["transfer-only breaks: 3 images (7.5%) broken only by a single-member or transfer "
                             "stage"]
    assert adaptive.transfer_lines("cifar10", tmp_path) == [
        "cifar10, EMPIR, L2 0.5: 3 images broken only by one member; not asked again yet "
        "(scripts/transfer_answer.py cifar10 empir l2)."]
    rec = transfer_answer.run("cifar10", ROW, ens, x, y, root=tmp_path, progress=False)
    # Only the suite's own ensemble-level stages, at 8x (not member-0, not a re-check round's stage).
    assert [a["name"] for a in rec["attacks"]] == ["x8-apgd-ce"]
    assert (rec["attacks"][0]["n_iter"], rec["attacks"][0]["restarts"]) == (16, 8)
    assert rec["index"] == idx.tolist() and rec["images"] == 3 and rec["broken"] + rec["remaining"] == 3
    assert rec["answered"] == (rec["remaining"] / len(y) <= 0.002) and rec["of"]["name"] == f"{ROW}-recheck"
    assert rec["invalid_outputs"] == {"x8-apgd-ce": 0} and rec["broken"] >= 2  # L2 0.5 breaks most of them
    assert rec["timing"]["wall_time_s"] > 0
    # The card and the chapter say what it found, answered or open.
    path = tmp_path / "cifar10" / "suite" / "empir-l2-transfer.json"
    for answered in (True, False):
        path.write_text(json.dumps({**json.loads(path.read_text()), "answered": answered}))
        card = cards.suite_card("cifar10", "empir", "l2", ROW, tmp_path)
        said = transfer_answer.sentence(transfer_answer.read("cifar10", ROW, tmp_path))
        assert said.startswith("the ensemble-level stages at 8x their budget, from the clean image, broke ")
        assert (card["flags_answered"] if answered else card["flags"])[0].endswith(said)
        assert not (card["flags"] if answered else card["flags_answered"])
        (line,) = adaptive.transfer_lines("cifar10", tmp_path)
        assert line.endswith(f"{said}: the flag {'is answered' if answered else 'stays open'} (the check flags "
                             "more than 0.2%).")
    # An answer asked of another version of the strongest evaluation is stale: the flag is plain again.
    rc = tmp_path / "cifar10" / "suite" / "empir-l2-recheck.json"
    rc.write_text(json.dumps({**json.loads(rc.read_text()), "note": "re-run"}))
    assert transfer_answer.read("cifar10", ROW, tmp_path) is None
    assert cards.suite_card("cifar10", "empir", "l2", ROW, tmp_path)["flags"][0].endswith("transfer stage")


def test_a_row_with_nothing_flagged_has_nothing_to_ask(empir, tmp_path):
    ens, x, y = empir
    write_row(tmp_path, ens, x, y, flagged=())
    with pytest.raises(EmpirError, match="nothing to ask"):
        transfer_answer.run("cifar10", ROW, ens, x, y, root=tmp_path, progress=False)
    with pytest.raises(EmpirError, match="is of"):
        transfer_answer.run("cifar10", ROW, ens_mod.from_zoo([settings.get("cifar10").empir_fp], "vote"), x, y,
                            root=tmp_path, progress=False)
