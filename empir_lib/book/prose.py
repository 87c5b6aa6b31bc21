"""How long the chapters' prose is: words, sentences, the longest sentence.

A chapter should be read in one sitting, in short sentences (issue 26): at
most :data:`MAX_WORDS` words of prose and no sentence over
:data:`MAX_SENTENCE` words.  ``tests/test_prose.py`` holds every chapter to
that, and ``scripts/prose_stats.py`` writes the table to a results file.

Prose is the text of a notebook's Markdown cells as a reader reads it.  Code
blocks, display equations, tables, HTML and MyST's directive lines are not
prose; an inline equation or inline code counts as one word, a link or a
cross-reference as its visible text, and a citation as nothing.  A sentence
ends at ``.``, ``!`` or ``?`` followed by a capital (common abbreviations such
as "e.g." and "Eq." do not end one), and at every paragraph, heading, list
item and directive boundary.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from ..core.errors import EmpirError

MAX_WORDS = 3000      # a chapter's prose, in words
MAX_SENTENCE = 40     # the longest sentence, in words

_FENCE = re.compile(r"^(```+|~~~+).*?^\1[ \t]*$", re.M | re.S)
_DISPLAY_MATH = re.compile(r"\$\$.*?\$\$", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_TAG = re.compile(r"<[^>\n]+>")
_CITE = re.compile(r"\{cite(?::\w+)?\}`[^`]*`")
_ROLE = re.compile(r"\{(?:ref|term|numref|doc|eq|download)\}`([^`<]*?)\s*(?:<[^`]*>)?`")
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_CODE = re.compile(r"`[^`\n]+`")
_MATH = re.compile(r"(?<![\\$])\$[^$\n]+\$")
# Abbreviations whose full stop does not end a sentence.
_ABBREVIATIONS = re.compile(r"\b(e\.g|i\.e|et al|cf|vs|Eqs?|Fig|Sec|approx|resp|No)\.", re.I)
_BOUNDARY_LINE = re.compile(r"^\s*(#{1,6}\s|:{3,}|[-*+]\s|\d+[.)]\s)")
_OPTION_LINE = re.compile(r"^\s*:[\w-]+:")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]*_]*\s+(?=[A-Z\"'(\[*_])")
_WORD = re.compile(r"\w")


def _inline(text: str) -> str:
    """A line with inline markup replaced by what a reader reads (one word for code or maths)."""
    text = _CITE.sub("", text)
    text = _ROLE.sub(lambda m: m.group(1), text)
    text = _IMAGE.sub("", text)
    text = _LINK.sub(lambda m: m.group(1), text)
    text = _CODE.sub("CODE", text)
    text = _MATH.sub("MATH", text)
    text = _ABBREVIATIONS.sub(lambda m: m.group(1).replace(".", ""), text)
    return text


def paragraphs(markdown: str) -> list[str]:
    """The prose blocks of one Markdown text, inline markup resolved, one string each."""
    text = _FENCE.sub("\n\n", markdown)
    text = _DISPLAY_MATH.sub("\n\n", text)
    text = _COMMENT.sub("", text)
    blocks: list[list[str]] = [[]]
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("|") or _OPTION_LINE.match(line):
            blocks.append([])
            continue
        if _BOUNDARY_LINE.match(line):
            blocks.append([])
            line = _BOUNDARY_LINE.sub("", line, count=1)
            if line.lstrip().startswith("{"):  # a directive's name and argument: ":::{admonition} Title"
                line = re.sub(r"^\s*\{[^}]*\}\s*", "", line)
        blocks[-1].append(_TAG.sub("", _inline(line)))
    return [" ".join(b).strip() for b in blocks if " ".join(b).strip()]


def words(text: str) -> int:
    """The number of words in a piece of prose: tokens with a letter or digit."""
    return sum(1 for token in text.split() if _WORD.search(token))


def sentences(markdown: str) -> list[str]:
    """The sentences of one Markdown text (see the module's docstring for the rules)."""
    out = []
    for block in paragraphs(markdown):
        out += [s.strip() for s in _SENTENCE_END.split(block) if words(s)]
    return out


def notebook_markdown(path: str | Path) -> list[str]:
    """The sources of a notebook's Markdown cells, in order."""
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise EmpirError(f"cannot read the notebook {path}: {e}") from e
    return ["".join(c.get("source", "")) for c in nb.get("cells", []) if c.get("cell_type") == "markdown"]


def chapter_stats(path: str | Path, limit: int = MAX_SENTENCE) -> dict:
    """One chapter's prose: words, sentences, the longest sentence, and those over ``limit`` words."""
    found = [s for cell in notebook_markdown(path) for s in sentences(cell)]
    lengths = [words(s) for s in found]
    longest = max(range(len(found)), key=lengths.__getitem__) if found else None
    return {"words": sum(lengths), "sentences": len(found),
            "longest_sentence": lengths[longest] if found else 0,
            "longest_text": found[longest] if found else "",
            f"over_{limit}": sum(n > limit for n in lengths),
            "long_sentences": [s for s, n in zip(found, lengths) if n > limit]}


def book_stats(paths: Iterable[str | Path], limit: int = MAX_SENTENCE) -> dict[str, dict]:
    """:func:`chapter_stats` for each notebook, by file stem."""
    return {Path(p).stem: chapter_stats(p, limit) for p in paths}


def table(stats: dict[str, dict], limit: int = MAX_SENTENCE) -> str:
    """The per-chapter numbers as a Markdown table."""
    rows = [f"| chapter | words | longest sentence | sentences over {limit} |", "|---|---:|---:|---:|"]
    rows += [f"| {name} | {s['words']} | {s['longest_sentence']} | {s[f'over_{limit}']} |"
             for name, s in stats.items()]
    return "\n".join(rows)
