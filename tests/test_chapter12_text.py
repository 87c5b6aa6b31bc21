"""Chapter 12 states two of the grader's constants in its text: they must be the constants the grader uses."""
import json

from conftest import REPO

from empir_lib.book import attack_tasks


def test_chapter_12_quotes_the_graders_tolerance_and_draws():
    nb = json.loads((REPO / "book" / "12_attack_it_yourself.ipynb").read_text())
    text = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert f"`attack_tasks.TOLERANCE` ({attack_tasks.TOLERANCE:g})" in text
    assert f"`attack_tasks.DRAWS` ({attack_tasks.DRAWS})" in text
