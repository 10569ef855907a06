"""The notebooks and the README stay short, and leave the numbers of a run to its outputs.

A number a run measures belongs in the output of the cell that computes it, so that a rerun
on another machine updates it; Markdown says what holds on any rerun. These limits keep the
lessons in the size of the field's teaching references (keras.io's transfer-learning guide,
the TensorFlow tutorial: about 2,000 words) and the README readable in five minutes.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
WORD = re.compile(r"[A-Za-z0-9][\w'’.,%×-]*")
# A run-measured number: a percentage, points, a time, a size in MB/GB, or a ratio (2.2×);
# settings such as 160×160, 1e-5 or 45,000 images are not matched.
MEASURED = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?\s*(?:%|percent\b|points?\b|min\b|minutes?\b"
                      r"|ms\b|MB\b|GB\b|GiB\b|s\b|seconds?\b|×(?!\s*\d)|x\b)")


def words(markdown):
    """Words of Markdown, without link targets and table rules."""
    markdown = re.sub(r"\]\([^)]*\)", "]", markdown)
    markdown = re.sub(r"^\s*\|?[\s:|-]+\|?\s*$", "", markdown, flags=re.MULTILINE)
    return len(WORD.findall(markdown))


def cells(path, kind):
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"]
            if c["cell_type"] == kind]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_is_a_lesson_of_at_most_2000_words(path):
    limit = 1000 if path.stem.startswith("00") else 2000
    assert sum(map(words, cells(path, "markdown"))) <= limit


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_markdown_quotes_at_most_ten_run_measured_numbers(path):
    found = [m.group(0) for text in cells(path, "markdown") for m in MEASURED.finditer(text)]
    assert len(found) <= 10, found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_opening_setup_and_closing_cells(path):
    markdown, code = cells(path, "markdown"), cells(path, "code")
    assert words(markdown[0]) <= 150, "the opening cell: title, one paragraph, what you learn"
    setup = [line for line in code[0].splitlines() if line.strip()]
    assert len(setup) <= 8 and setup[0].startswith("# Setup (plumbing)")
    assert any(re.search(r"^#+ .*(does not show|limits)", text, re.MULTILINE | re.IGNORECASE)
               for text in markdown[-3:]), "a closing 'What this notebook does not show' cell"


def test_the_readme_is_read_in_five_minutes():
    assert words((ROOT / "README.md").read_text()) <= 1200


def test_the_counts_see_what_they_count():
    assert words("A [link](https://example.com/a/b/c) here.\n| a | b |\n| --- | ---: |") == 5
    text = "It reached 88.8 % (+2.9 points) in 3.5 min, 0.17 ms, 2.2× faster, 1.8 MB; 160×160, 1e-5"
    assert [m.group(0) for m in MEASURED.finditer(text)] == \
        ["88.8 %", "2.9 points", "3.5 min", "0.17 ms", "2.2×", "1.8 MB"]
