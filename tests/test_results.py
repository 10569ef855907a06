"""Results files: atomic JSON with environment details, predictions, loading back."""

import json

import numpy as np
import pytest

from cifar_utils.results import load_results, save_results


def test_round_trip_with_predictions(tmp_path):
    preds = np.array([3, 1, 4, 1, 5])
    path = save_results("01_classic_cnn", tmp_path, predictions=preds, model="classic CNN",
                        test_accuracy=np.float32(0.75), params_total=np.int64(309_290),
                        data_provenance={"official": False})
    record = json.loads(path.read_text())
    assert record["test_accuracy"] == pytest.approx(0.75) and record["params_total"] == 309_290
    assert record["predictions_file"] == "01_classic_cnn_test_predictions.npy"
    assert {"tensorflow_version", "device", "saved_at"} <= set(record)
    assert np.array_equal(np.load(tmp_path / record["predictions_file"]), preds)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "01_classic_cnn.json", "01_classic_cnn_test_predictions.npy"]  # no temp files left


def test_load_results_makes_a_sorted_table(tmp_path):
    save_results("b_run", tmp_path, test_accuracy=0.8)
    save_results("a_run", tmp_path, test_accuracy=0.7, image_size=32)
    table = load_results(tmp_path)
    assert table["run"].tolist() == ["a_run", "b_run"]
    assert table["test_accuracy"].tolist() == [0.7, 0.8]


def test_rerun_replaces_only_its_own_files(tmp_path):
    save_results("keep", tmp_path, test_accuracy=0.5)
    save_results("redo", tmp_path, test_accuracy=0.1)
    save_results("redo", tmp_path, test_accuracy=0.2)
    table = load_results(tmp_path)
    assert dict(zip(table["run"], table["test_accuracy"], strict=True)) == {"keep": 0.5, "redo": 0.2}


def test_bad_inputs_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="run name '../escape'"):
        save_results("../escape", tmp_path)
    with pytest.raises(ValueError, match="argmax"):
        save_results("probs", tmp_path, predictions=np.ones((3, 10)))
    with pytest.raises(FileNotFoundError, match="no results"):
        load_results(tmp_path / "empty")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json is not valid JSON"):
        load_results(tmp_path)
