"""Ask a row's transfer-only breaks again, at the ensemble level with more budget (empir_lib.studies.transfer_answer).

    EMPIR_DATA_DIR=... PYTHONPATH=. .venv/bin/python scripts/transfer_answer.py cifar10 empir l2

attacks the images of the row's strongest evaluation that only a
single-member or transfer stage broke, from the clean image, with the
suite's ensemble-level gradient stages at 8 times their budget, and writes
``data/results/<dataset>/suite/<row>-<threat>-transfer.json``; the row's card
then lists the transfer flag as answered, or open with the count
(``empir_lib.studies.cards``), and the cards are rewritten.
"""
import json
import sys

from empir_lib.core import provenance, settings
from empir_lib.nets import data, ensemble
from empir_lib.studies import cards, results, suite_checks, transfer_answer


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("empir", "baseline"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    dataset, row, threat = argv
    s = settings.get(dataset)
    ens = ensemble.from_zoo(s.empir_ids if row == "empir" else [s.empir_fp], "vote")
    name = f"{suite_checks.FOLDER}/{row}-{threat}"
    n = suite_checks.evaluations(dataset, name)[-1][1]["n"]
    x, y = data.load(dataset, "test", None, n)
    prov = provenance.record(" ".join(["scripts/transfer_answer.py", *argv]))
    rec = transfer_answer.run(dataset, name, ens, x, y, prov=prov)
    print(json.dumps({k: rec[k] for k in ("images", "broken", "remaining", "remaining_share", "answered",
                                          "broken_by", "invalid_outputs")}, indent=1))
    cards.write(dataset)
    print(f"{results.results_dir(dataset) / transfer_answer.file_name(name)}.json written; cards rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
