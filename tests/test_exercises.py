"""The exercises of every notebook, as `make check-exercises` runs them, still fit the code.

`tools/check_exercises.py` turns each "Try it yourself" exercise into edits of the notebook's
code and runs it in quick mode (too slow for `make test`); here, without running anything,
every edit must find exactly the code it changes, and every exercise the notebooks number
must have its entry.
"""

import re

import check_exercises as ce
import nbformat
import pytest


@pytest.mark.parametrize("exercise", ce.EXERCISES, ids=lambda e: e.name)
def test_every_edit_finds_its_code(exercise):
    nb = ce.prepared(exercise)  # raises when a cell or a text to change is not found once
    assert exercise.output_dir in "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def exercise_numbers(notebook):
    """The numbers of the exercises in the notebook's "Try it yourself" section."""
    nb = nbformat.read(ce.NOTEBOOKS / notebook, as_version=4)
    text = next(c.source for c in nb.cells if "## Try it yourself" in c.source)
    section = text.split("## Try it yourself", 1)[1].split("\n## ", 1)[0]
    return {int(n) for n in re.findall(r"^(\d+)\. ", section, re.MULTILINE)}


@pytest.mark.parametrize("notebook", [ce.N00, ce.N01, ce.N02, ce.N03, ce.N04])
def test_every_exercise_is_checked(notebook):
    answered_in_words = {ce.N04: {4}}  # which variant to ship: a question, nothing to run
    checked = {e.number for e in ce.EXERCISES if e.notebook == notebook and e.number > 0}
    assert exercise_numbers(notebook) == checked | answered_in_words.get(notebook, set())


def test_an_edit_that_finds_nothing_is_refused():
    broken = ce.Exercise(ce.N01, 9, edits=[(ce.PARAMS, "IMPROVED_WIDTH = 99", "x", 1)])
    with pytest.raises(LookupError, match="occurs 0 times"):
        ce.prepared(broken)


def test_a_write_outside_the_exercise_folder_is_seen():
    stray = ce.ROOT / "build" / "check_exercises_test_stray.txt"
    before = ce.snapshot()
    try:
        stray.parent.mkdir(exist_ok=True)
        stray.write_text("an exercise wrote here")
        after = ce.snapshot()
    finally:
        stray.unlink(missing_ok=True)
    assert set(after) - set(before) == {"build/check_exercises_test_stray.txt"}
    folder = ce.NOTEBOOKS / "my_runs"  # the exercise's own folder: left alone by the check
    created = not folder.exists()
    try:
        folder.mkdir(exist_ok=True)
        (folder / "check_exercises_test.json").write_text("{}")
        assert ce.snapshot() == before
    finally:
        (folder / "check_exercises_test.json").unlink()
        if created:
            folder.rmdir()
