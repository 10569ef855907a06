"""The notebooks' shape: one setup cell, a parameters cell nothing overrides, no helpers.

These read the notebooks as files; `pytest --nbval-lax notebooks` executes them.
"""

import ast
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def cells(path, kind="code"):
    return ["".join(cell["source"]) for cell in json.loads(path.read_text())["cells"]
            if cell["cell_type"] == kind]


def python(source):
    """A cell's code as Python: IPython magics (`%pip ...`) become `pass`."""
    return ast.parse(re.sub(r"^(\s*)%.*$", r"\1pass", source, flags=re.MULTILINE))


def parameters_cell(path):
    found = [i for i, cell in enumerate(json.loads(path.read_text())["cells"])
             if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert len(found) == 1, f"{path.name}: one cell tagged 'parameters'"
    return found[0]


def test_every_notebook_starts_with_the_same_setup_cell():
    setups = {cells(path)[0] for path in NOTEBOOKS}
    assert len(NOTEBOOKS) >= 4 and len(setups) == 1
    assert "import cifar_utils as cu" in setups.pop()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_badge_points_at_this_notebook_in_the_setup_repository(path):
    repository = re.search(r'REPOSITORY = "https://github.com/([^"]+)"', cells(path)[0]).group(1)
    title = cells(path, "markdown")[0]
    assert (f"https://colab.research.google.com/github/{repository}/blob/main/notebooks/"
            f"{path.name}") in title


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_cells_define_no_functions_and_read_splits_by_name(path):
    for source in cells(path):
        tree = python(source)
        assert not [node for node in ast.walk(tree)
                    if isinstance(node, (ast.FunctionDef, ast.Lambda, ast.ClassDef))], source
        assert not re.search(r"\.(train|val|test)\[\d\]", source), source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_nothing_after_the_parameters_cell_reassigns_a_parameter(path):
    """So that a value given with `papermill -p` is the value used."""
    all_cells = json.loads(path.read_text())["cells"]
    index = parameters_cell(path)
    names = {target.id for node in python("".join(all_cells[index]["source"])).body
             if isinstance(node, ast.Assign) for target in node.targets
             if isinstance(target, ast.Name)}
    assert "OUTPUT_DIR" in names and "SEED" in names
    for cell in all_cells[index + 1:]:
        if cell["cell_type"] != "code":
            continue
        tree = python("".join(cell["source"]))
        assigned = {node.id for node in ast.walk(tree)
                    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
        assert not assigned & names, f"{path.name} reassigns {assigned & names}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_says_where_it_writes(path):
    assert "**Where it writes:**" in cells(path, "markdown")[0]
    assert f'cu.Recorder("{path.stem}"' in "".join(cells(path))
