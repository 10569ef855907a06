"""The notebooks' shape: one setup cell, a parameters cell nothing overrides, shared code once.

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
def test_code_cells_read_splits_by_name(path):
    for source in cells(path):
        assert not re.search(r"\.(train|val|test)\[\d\]", source), source


def functions(path):
    """The functions a notebook defines, by name."""
    return {node.name: node for source in cells(path) for node in ast.walk(python(source))
            if isinstance(node, ast.FunctionDef)}


def test_a_function_two_notebooks_define_is_defined_once():
    """Code two notebooks need lives once, in the package; the exception is the d2l way,
    a function written out where it is taught and reused from the package after that."""
    seen = {}
    for path in NOTEBOOKS:
        for name in functions(path):
            assert name not in seen or name in TAUGHT_AND_SHARED, \
                f"{name} is defined in {seen.get(name)} and {path.name}: move it to cifar_utils"
            seen[name] = path.name


TAUGHT_AND_SHARED = {"transfer_model",  # three Keras lines that notebooks 02 and 03 teach
                     "conv_bn", "residual"}  # 01's CNN, built in view again as 05's student


def test_a_function_written_out_in_two_notebooks_is_the_same_code():
    seen = {}
    for path in NOTEBOOKS:
        for name, function in functions(path).items():
            if name in TAUGHT_AND_SHARED - {"transfer_model"}:
                code = ast.dump(function)
                assert seen.setdefault(name, code) == code, f"{path.name} changed {name}"
    assert set(seen) == {"conv_bn", "residual"}


def body_without_docstring(function):
    """A function's code as a comparable string, `cu.` prefixes dropped."""
    body = function.body[1:] if isinstance(function.body[0], ast.Expr) else function.body
    return ast.dump(ast.Module(body=body, type_ignores=[])).replace(
        "Attribute(value=Name(id='cu', ctx=Load()), attr='TrainingLog', ctx=Load())",
        "Name(id='TrainingLog', ctx=Load())")


def test_notebook_02_writes_out_the_train_head_that_notebook_03_reuses():
    """d2l's way: the function is written where it is taught (02) and reused from the
    package (03); the two must stay the same code."""
    import inspect

    from cifar_utils import training

    written = functions(next(p for p in NOTEBOOKS if p.stem.startswith("02")))["train_head"]
    packaged = ast.parse(inspect.getsource(training.train_head)).body[0]
    assert ast.dump(written.args) == ast.dump(packaged.args)
    assert body_without_docstring(written) == body_without_docstring(packaged)
    assert "cu.train_head" in "".join(cells(next(p for p in NOTEBOOKS if p.stem.startswith("03"))))


def test_notebook_04_writes_out_the_converter_that_notebook_05_reuses():
    import inspect

    from cifar_utils import shipping

    written = functions(next(p for p in NOTEBOOKS if p.stem.startswith("04")))["converter"]
    packaged = ast.parse(inspect.getsource(shipping.converter)).body[0]
    assert ast.dump(written.args) == ast.dump(packaged.args)
    body = body_without_docstring(packaged).replace(  # the package imports TensorFlow itself
        "Import(names=[alias(name='tensorflow', asname='tf')]), ", "")
    assert body_without_docstring(written) == body
    assert "cu.converter" in "".join(cells(next(p for p in NOTEBOOKS if p.stem.startswith("05"))))


def test_notebook_02_writes_out_the_heads_that_notebook_03_builds_from_the_package():
    """Every head 02 builds with its written-out `dense_head` / `linear_head` is the head the
    package builds with the same settings (03 builds them there when 02's are missing): the
    same name, layers, layer settings and initial weights."""
    import keras
    import numpy as np

    from cifar_utils import models

    notebook = next(p for p in NOTEBOOKS if p.stem.startswith("02"))
    written = {"keras": keras, "layers": keras.layers}
    exec(compile(ast.Module(body=[functions(notebook)[name] for name in ("dense_head", "linear_head")],
                            type_ignores=[]), notebook.name, "exec"), written)
    calls = [node for source in cells(notebook) for node in ast.walk(python(source))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
             and node.func.id in ("dense_head", "linear_head")]
    assert {call.func.id for call in calls} == {"dense_head", "linear_head"}
    assert "cu.build_" not in "".join(cells(notebook))

    def layers(model):
        return [(type(layer).__name__, {k: v for k, v in layer.get_config().items() if k != "name"})
                for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]

    for call in calls:
        args = [ast.literal_eval(arg) for arg in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        keras.utils.set_random_seed(0)
        ours = written[call.func.id](*args, **kwargs)
        keras.utils.set_random_seed(0)
        if call.func.id == "linear_head":
            package = models.build_linear_head()
        else:
            package = models.build_dense_head(units=(args or [kwargs.pop("units", None)])[0],
                                              **{k: v for k, v in kwargs.items() if k != "units"})
        assert ours.name == package.name and ours.input_shape == package.input_shape
        assert layers(ours) == layers(package), ast.unparse(call)
        assert all(np.array_equal(a, b)
                   for a, b in zip(ours.get_weights(), package.get_weights(), strict=True))


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
def test_each_notebook_writes_through_its_own_recorder_and_points_to_the_readme(path):
    """Where notebooks write, run time and quick mode are said once, in the README."""
    assert f'cu.Recorder("{path.stem}"' in "".join(cells(path))
    assert "README.md#running-the-notebooks" in cells(path, "markdown")[0]



# What a reader on GitHub must not see in the committed outputs (the guide's standard).
UNREADABLE = {
    "a machine path": re.compile(r"/(?:work|tmp|root|home|Users)/|site-packages"),
    "a progress bar": re.compile(r"\r|\d+/\d+ ━"),
    "a warning": re.compile(r"warn", re.IGNORECASE),  # UserWarning, WARNING:, warnings.warn
}


def unreadable_outputs(notebook):
    """Every error, stderr stream, machine path, progress bar or warning in the outputs."""
    found = []
    for number, cell in enumerate(notebook["cells"]):
        for output in cell.get("outputs", []):
            if output["output_type"] == "error" or output.get("name") == "stderr":
                found.append(f"cell {number}: {output.get('name', 'an error')}")
                continue
            data = output.get("data", {})
            text = "".join("".join(part) for part in (
                output.get("text", ""), data.get("text/plain", ""), data.get("text/html", "")))
            for what, pattern in UNREADABLE.items():
                if match := pattern.search(text):
                    context = text[max(match.start() - 60, 0):match.end() + 60]
                    found.append(f"cell {number}: {what}: ...{context}...")
    return found


def test_unreadable_outputs_finds_each_kind():
    def stream(text, name="stdout"):
        return {"output_type": "stream", "name": name, "text": [text]}
    notebook = {"cells": [{"cell_type": "code", "outputs": [
        stream("saved in /home/ana/cifar/figures"), stream("loaded\n", "stderr"),
        stream("1407/1407 ━━━━━━━━━━ 45s"), stream("UserWarning: deprecated"),
        stream("epoch 1/8  acc 80.0%  (the text describes the full run)")]}]}
    assert [problem.split(":")[1].strip() for problem in unreadable_outputs(notebook)] == [
        "a machine path", "stderr", "a progress bar", "a warning"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_outputs_are_clean_enough_to_read(path):
    assert path.stat().st_size <= 3_000_000, f"{path.name}: {path.stat().st_size:,} bytes"
    assert unreadable_outputs(json.loads(path.read_text())) == []
