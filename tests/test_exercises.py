"""The exercises of every notebook, as `make check-exercises` does them, still fit the code.

`tools/check_exercises.py` follows each "Try it yourself" exercise's steps (edits, cells to
run, cells to add) after the committed notebook has run, in quick mode (too slow for
`make test`); here, without running anything, every step must find exactly the cell it
names, and every exercise the notebooks number must have its entry.
"""

import re

import check_exercises as ce
import nbformat
import pytest


@pytest.mark.parametrize("exercise", ce.EXERCISES, ids=lambda e: e.name)
def test_every_step_finds_its_cell(exercise):
    nb = ce.check(exercise)  # raises when a cell or a text to change is not found once
    assert f'OUTPUT_DIR = "{exercise.output_dir}"' in nb.cells[ce.code_index(nb, ce.PARAMS)].source


def exercise_numbers(notebook):
    """The numbers of the exercises in the notebook's "Try it yourself" section."""
    nb = nbformat.read(ce.NOTEBOOKS / notebook, as_version=4)
    text = next(c.source for c in nb.cells if "## Try it yourself" in c.source)
    section = text.split("## Try it yourself", 1)[1].split("\n## ", 1)[0]
    return {int(n) for n in re.findall(r"^(\d+)\. ", section, re.MULTILINE)}


@pytest.mark.parametrize("notebook", [ce.N00, ce.N01, ce.N02, ce.N03, ce.N04, ce.N05])
def test_every_exercise_is_checked(notebook):
    answered_in_words = {ce.N04: {4}}  # which variant to ship: a question, nothing to run
    checked = {e.number for e in ce.EXERCISES if e.notebook == notebook and e.number > 0}
    assert exercise_numbers(notebook) == checked | answered_in_words.get(notebook, set())


def test_a_step_that_finds_nothing_is_refused():
    with pytest.raises(LookupError, match="occurs 0 times"):
        ce.check(ce.Exercise(ce.N01, 9, (ce.Edit(ce.PARAMS, "IMPROVED_WIDTH = 99", "x"),)))
    with pytest.raises(LookupError, match="0 code cells hold 'no such cell'"):
        ce.check(ce.Exercise(ce.N01, 9, (ce.Run("no such cell"),)))


def test_steps_run_the_cells_they_name_in_order():
    nb = ce.committed(ce.EXERCISES[0])
    first, last = ce.code_index(nb, ce.PARAMS), ce.code_index(nb, ce.RECORD)
    assert ce.cells_to_run(nb, ce.Run(ce.PARAMS)) == [first]
    assert ce.cells_to_run(nb, ce.Run(ce.PARAMS, ce.RECORD)) == \
        [i for i in range(first, last + 1) if nb.cells[i].cell_type == "code"]
    assert ce.cells_to_run(nb, ce.Run(ce.RECORD, ce.END))[-1] == \
        max(i for i, c in enumerate(nb.cells) if c.cell_type == "code")


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
