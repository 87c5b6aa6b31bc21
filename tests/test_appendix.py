"""The appendix on the original code (book/appendix_original_code.ipynb) and the citations that point at it.

The appendix has one numbered section, with a MyST label, for every numbered
section of the notes it was written from (reference/empir-original-code-facts.md,
kept outside the repository); chapters and library cite it as "appendix, section N"
rather than a file the reader cannot open.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import REPO

APPENDIX = REPO / "book" / "appendix_original_code.ipynb"
# The notes live beside the repository (../shared/reference); the test checks them when present.
REFERENCE = Path(os.environ.get("EMPIR_REFERENCE_DIR", REPO.parent / "shared" / "reference"))
FACTS = REFERENCE / "empir-original-code-facts.md"
# The sections the appendix was written against (the notes' "## N." headings).
SECTIONS = list(range(10))


def markdown(path: Path) -> str:
    nb = json.loads(path.read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")


def appendix_sections() -> dict[int, str]:
    """{N: label} for every '(original-code-sN)=' label followed by a '## N.' heading."""
    found = re.findall(r"^\((original-code-s(\d+))\)=\n## (\d+)\. ", markdown(APPENDIX), re.M)
    assert all(n == m for _, n, m in found), "a label's number differs from its heading's"
    return {int(n): label for label, n, _ in found}


def test_one_appendix_section_per_fact_sheet_section():
    assert sorted(appendix_sections()) == SECTIONS


def test_the_notes_have_the_same_sections():
    if not FACTS.is_file():
        pytest.skip(f"{FACTS} is not here (it is kept outside the repository)")
    numbers = [int(n) for n in re.findall(r"^## (\d+)\. ", FACTS.read_text(), re.M)]
    assert numbers == SECTIONS


def chapters() -> list[Path]:
    return sorted((REPO / "book").glob("*.ipynb"))


def test_every_appendix_link_names_an_existing_section():
    labels = set(appendix_sections().values())
    for path in chapters():
        for target in re.findall(r"\{ref\}`[^`<]*<?(original-code-s\d+)>?`", markdown(path)):
            assert target in labels, f"{path.name} links to {target}, which the appendix does not define"


def test_the_book_cites_the_appendix_not_the_fact_sheet():
    offenders = [p.relative_to(REPO) for p in [*chapters(), *(REPO / "book").rglob("*.md")]
                 if re.search(r"fact[ -]sheet", p.read_text(), re.I)]
    assert not offenders, f"cite the appendix section instead of the fact sheet in: {offenders}"


def test_the_chapters_link_to_the_appendix():
    linked = [p.name for p in chapters() if "original-code-s" in markdown(p) and p != APPENDIX]
    assert len(linked) >= 6, linked


def test_the_library_cites_the_appendix_not_the_fact_sheet():
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "empir_lib").rglob("*.py")
                 if re.search(r"fact[ -]sheet", p.read_text(), re.I)]
    assert not offenders, f"cite 'appendix section N (book/appendix_original_code.ipynb)' instead in: {offenders}"
