"""Table 2's label column in chapter 8: the paper protocol's accuracy that is corrected mistakes, per row and attack."""
import json

from empir_lib.book.chapters import table2
from empir_lib.studies import paper_labels, results


def test_the_label_table_shows_every_row_and_attack_of_the_committed_file():
    for dataset in ("mnist", "cifar10"):
        md = table2.label_shares(dataset)
        col = paper_labels.column(dataset)
        lines = [line for line in md.splitlines() if line.startswith("| ") and "share" not in line]
        assert len(lines) == len(col) == 2
        for name, shares in col.items():
            assert f"| {name} | " + " | ".join(shares[a] for a in results.ATTACK_COLUMNS) + " |" in md


def test_a_share_the_totals_only_bound_is_shown_as_its_range(tmp_path):
    rows = {"table2/baseline-paper-pgd": {"share": None, "share_lo": 0.25, "share_hi": 1.0},
            "table2/empir-paper-pgd": {"share": 0.5}}
    (tmp_path / "mnist" / "labels").mkdir(parents=True)
    (tmp_path / "mnist" / "labels" / "paper-protocol.json").write_text(json.dumps({"rows": rows}))
    md = table2.label_shares("mnist", tmp_path)
    assert "25.0%-100.0%" in md and "50.0%" in md and "—" in md  # CW, FGSM and BIM missing: a dash
