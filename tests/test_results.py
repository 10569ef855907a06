"""Results files: atomic JSON with environment details, predictions, loading back."""

import json
import os

import numpy as np
import pytest

from cifar_utils.results import load_results, save_results, save_run


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
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as readable as any other file


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


def test_save_run_records_the_fields_comparisons_need(tmp_path):
    import keras

    from cifar_utils.data import DataProvenance
    from cifar_utils.metrics import Evaluation

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])
    model.layers[0].trainable = False
    evaluation = Evaluation(probabilities=np.eye(10)[[1, 2, 3]], predictions=np.array([1, 2, 3]),
                            accuracy=2 / 3, loss=0.5)
    provenance = DataProvenance(source="a local folder", official=False,
                                md5={"test_batch": "abc"}, modified_files=("test_batch",))
    path = save_run("02_frozen", tmp_path, model_name="Frozen", notebook="02.ipynb", model=model,
                    evaluation=evaluation, train_seconds=12.345, epochs=3, image_size=160,
                    provenance=provenance, head="large")
    record = json.loads(path.read_text())
    assert record["params_total"] == 50 and record["params_trainable"] == 0
    assert record["test_accuracy"] == pytest.approx(2 / 3) and record["test_images"] == 3
    assert record["data_provenance"]["md5"] == {"test_batch": "abc"}
    assert record["train_seconds"] == 12.3 and record["head"] == "large"
    assert np.load(tmp_path / record["predictions_file"]).tolist() == [1, 2, 3]
