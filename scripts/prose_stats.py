"""Measure the chapters' prose: words, the longest sentence, sentences over 40 words.

    PYTHONPATH=$PWD .venv/bin/python scripts/prose_stats.py                       # print the table
    PYTHONPATH=$PWD .venv/bin/python scripts/prose_stats.py --out data/results/prose/after.json

The rules (what counts as prose, where a sentence ends) are those of
``empir_lib.book.prose``; ``tests/test_prose.py`` holds every chapter to
``MAX_WORDS`` and ``MAX_SENTENCE``.  ``--long`` also prints each sentence over
the limit, to find what to cut.
"""
import argparse
import json
import sys

from empir_lib.book import prose
from empir_lib.core import files, provenance

BOOK = files.REPO / "book"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="default: book/NN_*.ipynb and the appendix")
    parser.add_argument("--out", help="write the numbers, with provenance, to this JSON file")
    parser.add_argument("--long", action="store_true", help="print every sentence over the limit")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(BOOK.glob("[0-9][0-9]_*.ipynb")) + [BOOK / "appendix_original_code.ipynb"]
    stats = prose.book_stats(paths)
    print(prose.table(stats))
    if args.long:
        for name, s in stats.items():
            for sentence in s["long_sentences"]:
                print(f"\n[{name}, {prose.words(sentence)} words] {sentence}")
    if args.out:
        record = {"limits": {"words": prose.MAX_WORDS, "sentence": prose.MAX_SENTENCE},
                  "chapters": {k: {f: v for f, v in s.items() if f != "long_sentences"} for k, s in stats.items()},
                  "provenance": provenance.record()}
        text = json.dumps(record, indent=1) + "\n"
        files.atomic_write(args.out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
