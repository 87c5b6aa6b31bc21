"""Chapters a student reads in one sitting (issue 26): short sentences, at most 3,000 words.

Every chapter's prose (its Markdown cells, measured by empir_lib.book.prose)
has no sentence over MAX_SENTENCE words and at most MAX_WORDS words; the
appendix, a reference read section by section, is held to the sentence limit
only.  Every chapter opens with what the reader will learn and ends its text
with its key results; the glossary its terms link to is in the book.  The
first tests show that the measure itself can fail.
"""
import json
import re
from pathlib import Path

import pytest
import yaml

from empir_lib.book import prose

REPO = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((REPO / "book").glob("[0-9][0-9]_*.ipynb"))
APPENDIX = REPO / "book" / "appendix_original_code.ipynb"


def _notebook(tmp_path, *markdown):
    cells = [{"cell_type": "markdown", "metadata": {}, "source": m} for m in markdown]
    cells.append({"cell_type": "code", "metadata": {}, "source": "x = 1  " + "word " * 500, "outputs": []})
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


# --- the measure --------------------------------------------------------------------


def test_sentences_split_at_full_stops_and_blocks_not_at_abbreviations():
    text = ("# A heading\n\nOne short sentence. Another one, e.g. with an abbreviation, Eq. 5 and\n"
            "a wrapped line! A question?\n\n- a list item\n- another item\n")
    assert prose.sentences(text) == ["A heading", "One short sentence.",
                                     "Another one, eg with an abbreviation, Eq 5 and a wrapped line!",
                                     "A question?", "a list item", "another item"]


def test_code_maths_tables_and_directives_are_not_prose():
    text = ("Before $x^2 + y^2$ and `some code here` end.\n\n```python\nignored words here\n```\n\n"
            "$$\na + b\n$$\n\n| a | table |\n|---|---|\n\n:::{admonition} Title here\n:class: note\n"
            "Inside text {cite:p}`ref2020` and {term}`a term <label>` and [a link](http://x.y).\n:::\n")
    assert prose.sentences(text) == ["Before MATH and CODE end.", "Title here",
                                     "Inside text  and a term and a link."]
    assert prose.words(" ".join(prose.sentences(text))) == 5 + 2 + 8


def test_a_long_sentence_and_a_long_chapter_are_caught(tmp_path):
    long = " ".join(["Word"] + ["word"] * prose.MAX_SENTENCE) + "."
    stats = prose.chapter_stats(_notebook(tmp_path, "Short one. " + long))
    assert stats["longest_sentence"] == prose.MAX_SENTENCE + 1
    assert stats[f"over_{prose.MAX_SENTENCE}"] == 1 and stats["long_sentences"] == [long]
    assert stats["words"] == 2 + prose.MAX_SENTENCE + 1  # the code cell does not count
    many = _notebook(tmp_path, *(["Ten words in this sentence, which is not long at all."] * 301))
    assert prose.chapter_stats(many)["words"] > prose.MAX_WORDS


def test_the_before_numbers_are_committed():
    before = json.loads((REPO / "data" / "results" / "prose" / "before.json").read_text())
    # Every page that existed when the snapshot was taken has its 'before' numbers; chapters written after it
    # (12, attack it yourself; 13, chapter 11's part 2 split off) have none to compare with.
    now = {p.stem for p in [*CHAPTERS, APPENDIX]}
    assert set(before["chapters"]) <= now and len(before["chapters"]) == 12
    assert "git_commit" in before["provenance"]


# --- the chapters ---------------------------------------------------------------------


@pytest.mark.parametrize("path", [*CHAPTERS, APPENDIX], ids=lambda p: p.stem)
def test_no_sentence_over_the_limit(path):
    stats = prose.chapter_stats(path)
    assert not stats["long_sentences"], (
        f"{path.name}: {len(stats['long_sentences'])} sentences over {prose.MAX_SENTENCE} words, e.g. "
        + repr(stats["long_sentences"][0]))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_a_chapter_is_read_in_one_sitting(path):
    assert prose.chapter_stats(path)["words"] <= prose.MAX_WORDS, path.name


@pytest.mark.parametrize("path", [*CHAPTERS, APPENDIX], ids=lambda p: p.stem)
def test_a_chapter_opens_with_what_you_will_learn_and_ends_with_key_results(path):
    cells = prose.notebook_markdown(path)
    assert ":::{admonition} What you will learn" in cells[0], path.name
    text = "\n".join(cells)
    assert re.search(r":::\{admonition\} Key results", text), path.name
    body = text.split("## Exercises")[0]
    assert body.rfind("Key results") > body.rfind("\n## "), f"{path.name}: key results come after the last section"


def test_the_glossary_is_in_the_book_and_defines_every_linked_term():
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert "book/glossary" in files
    glossary = (REPO / "book" / "glossary.md").read_text()
    defined = {t.lower() for t in re.findall(r"^(\S[^\n]*)\n  \S", glossary.split(":::{glossary}")[1], re.M)}
    linked = set()
    for path in [*CHAPTERS, APPENDIX, REPO / "book" / "glossary.md"]:
        text = "\n".join(prose.notebook_markdown(path)) if path.suffix == ".ipynb" else path.read_text()
        for m in re.finditer(r"\{term\}`([^`<]*?)\s*(?:<([^`>]*)>)?`", text):
            linked.add((m.group(2) or m.group(1)).lower())
    assert linked and linked <= defined, linked - defined
