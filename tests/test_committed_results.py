"""The committed results files: complete records whose accuracy the predictions reproduce.

Every `results/<run>.json` names a predictions file holding the predicted class of each
of the 10,000 test images; recomputing the accuracy from it and the real test labels
must give the recorded number. Needs the real labels, so it runs where CIFAR10_DIR is
set (always in CI).
"""

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from cifar_utils import load_cifar10
from cifar_utils.reader import ModifiedDataWarning

RESULTS = Path(__file__).resolve().parents[1] / "results"
RECORDS = sorted(RESULTS.glob("*.json"))
REQUIRED = {"model", "notebook", "test_accuracy", "train_seconds", "image_size",
            "params_total", "data_provenance", "predictions_file"}


@pytest.fixture(scope="module")
def test_labels():
    if not os.environ.get("CIFAR10_DIR"):
        if os.environ.get("CI"):
            pytest.fail("CI must set CIFAR10_DIR (see .ci/run)")
        pytest.skip("set CIFAR10_DIR to a local CIFAR-10 copy to check the committed results")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModifiedDataWarning)
        _, (_, y_test) = load_cifar10()
    return y_test


@pytest.mark.parametrize("path", RECORDS, ids=[p.stem for p in RECORDS])
def test_recorded_accuracy_is_reproduced_by_the_predictions(path, test_labels):
    record = json.loads(path.read_text())
    assert REQUIRED <= set(record), f"missing fields: {REQUIRED - set(record)}"
    predictions = np.load(RESULTS / record["predictions_file"])
    assert predictions.shape == (10_000,) and np.issubdtype(predictions.dtype, np.integer)
    assert record["test_accuracy"] == pytest.approx(np.mean(predictions == test_labels), abs=1e-12)
    assert isinstance(record["data_provenance"]["official"], bool)  # which copy of the data


def section_rows(heading):
    """The rows of the RESULTS.md table under `## heading`, as lists of cells."""
    text = (RESULTS.parent / "RESULTS.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return [[cell.strip() for cell in line.split("|")[1:-1]] for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| ---")]


def trained_models():
    records = [json.loads(path.read_text()) for path in RECORDS]
    return [record for record in records if "variant" not in record]


def test_results_md_has_one_row_per_trained_model_with_its_accuracy():
    header, *rows = section_rows("Every trained model")
    assert [row[0] for row in rows] == [record["model"] for record in trained_models()]
    for row, record in zip(rows, trained_models(), strict=True):
        assert row[2] == f"{record['test_accuracy']:.1%}"


def test_results_md_recall_per_class_is_recomputed_from_the_predictions(test_labels):
    from cifar_utils import CLASS_NAMES

    header, *rows = section_rows("Class by class")
    records = trained_models()
    assert header[1:] == [record["model"] for record in records]
    assert [row[0] for row in rows] == list(CLASS_NAMES)
    for column, record in enumerate(records, start=1):
        predicted = np.load(RESULTS / record["predictions_file"])
        for label, row in enumerate(rows):
            assert row[column] == f"{100 * np.mean(predicted[test_labels == label] == label):.1f}"


def test_results_md_accuracy_by_pixel_origin_is_recomputed_from_the_predictions(test_labels):
    from cifar_utils.reader import PARTLY_RECOVERED

    _, *rows = section_rows("Original pixels and JPEG-recovered ones")
    records = trained_models()
    assert [row[0] for row in rows] == [record["model"] for record in records]
    for row, record in zip(rows, records, strict=True):
        original = PARTLY_RECOVERED[record["data_provenance"]["md5"]["test_batch"]]
        right = np.load(RESULTS / record["predictions_file"]) == test_labels
        kept, recovered = right[:original].mean(), right[original:].mean()
        assert row[1:] == [f"{kept:.2%}", f"{recovered:.2%}",
                           f"{100 * (kept - recovered):+.1f} points",
                           f"±{196 * np.sqrt(kept * (1 - kept) / original):.1f} points"]


def test_results_md_and_the_readme_tables_are_what_make_results_tables_writes(test_labels):
    """RESULTS.md is generated in full and the README shows the tables as printed, so a
    rerun regenerates them, never retypes (run `make results-tables` when this fails)."""
    import results_tables

    text, headline, run_time = results_tables.tables(RESULTS)
    assert (RESULTS.parent / "RESULTS.md").read_text() == text, "RESULTS.md is stale"
    readme = (RESULTS.parent / "README.md").read_text()
    for table in (headline, run_time):
        assert table in readme, f"README lacks, or differs from, this table:\n{table}"


def test_shipped_models_are_the_committed_runs():
    """models/ holds what notebook 04 explains on a fresh clone: each model beside the very
    record of the run that made it (notebook, commit, test accuracy), at most 20 MB in all."""
    import ship_models
    shipped = RESULTS.parent / "models"
    files = [shipped / f"{run}.{kind}" for run in ship_models.RUNS for kind in ("keras", "json")]
    assert all(path.is_file() for path in files), "run `make ship-models` after the full run"
    for run in ship_models.RUNS:
        record = json.loads((shipped / f"{run}.json").read_text())
        assert record == json.loads((RESULTS / f"{run}.json").read_text()), run
        assert record["commit"], f"{run}: the shipped model names the commit that made it"
    assert sum(path.stat().st_size for path in files) <= ship_models.LIMIT_MB * 1e6
