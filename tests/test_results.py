"""Results files: atomic JSON with environment details, predictions, loading back."""

import json
import os

import numpy as np
import pytest

from cifar_utils.files import OutputFolderError
from cifar_utils.reader import DataProvenance
from cifar_utils.results import Recorder, load_results, results_table, save_results


def test_round_trip_with_predictions(tmp_path):
    preds = np.array([3, 1, 4, 1, 5])
    path = save_results("01_classic_cnn", tmp_path, predictions=preds, model="classic CNN",
                        test_accuracy=np.float32(0.75), params_total=np.int64(309_290),
                        data_provenance={"official": False})
    record = json.loads(path.read_text())
    assert record["test_accuracy"] == pytest.approx(0.75) and record["params_total"] == 309_290
    assert record["predictions_file"] == "01_classic_cnn_test_predictions.npy"
    assert {"tensorflow_version", "device", "saved_at"} <= set(record)
    assert record["device"] == "CPU" or record["device"].startswith("GPU (")
    import tensorflow as tf

    assert record["tensorflow_version"] == tf.__version__
    assert (record["device"] == "CPU") == (not tf.config.list_physical_devices("GPU"))
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


PROVENANCE = DataProvenance(source="a local folder", official=False, md5={"test_batch": "abc"},
                            modified_files=("test_batch",))


@pytest.mark.parametrize("content, problem", [
    (b"\xff\xfe\x00", "not UTF-8"),
    (b"[1, 2]", "found a JSON list"),
    (b'{"model": "no run name"}', "found no 'run' name"),
])
def test_files_that_are_not_records_are_named_not_loaded(tmp_path, content, problem):
    save_results("good", tmp_path, test_accuracy=0.5)
    (tmp_path / "stray.json").write_bytes(content)
    with pytest.raises(ValueError, match=f"stray.json is not a results .*{problem}"):
        load_results(tmp_path)


def make_recorder(tmp_path, notebook="02_mobilenetv2_frozen"):
    return Recorder(notebook, PROVENANCE, tmp_path / "out")


def training_log(*, seconds, epoch_seconds):
    """A `TrainingLog` as `model.fit` leaves it: its times and its number of epochs."""
    from cifar_utils.training import TrainingLog

    log = TrainingLog()
    log.seconds, log.epoch_seconds = seconds, list(epoch_seconds)
    return log


def test_recorder_checks_its_folders_before_any_training(tmp_path, capsys):
    recorder = make_recorder(tmp_path)
    assert recorder.folders.results == tmp_path / "out" / "results"
    assert all(folder.is_dir() for folder in (recorder.folders.figures, recorder.folders.results,
                                              recorder.folders.models))
    assert capsys.readouterr().out == ("Figures, results and trained models are saved in "
                                       f"{tmp_path / 'out'}/.\n")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be")
    with pytest.raises(OutputFolderError, match="cannot write to .*blocked.*OUTPUT_DIR"):
        Recorder("01_baseline_cnn", PROVENANCE, blocked)
    with pytest.raises(ValueError, match="notebook's file name"):
        Recorder("baseline.ipynb", PROVENANCE, tmp_path)


def test_a_quick_recorder_says_its_numbers_are_not_results(tmp_path, capsys):
    import keras

    from cifar_utils.metrics import Evaluation

    recorder = Recorder("01_baseline_cnn", PROVENANCE, tmp_path / "quick", quick=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("QUICK MODE:") and "NOT the results the text describes" in lines[0]
    assert lines[1] == f"Figures, results and trained models are saved in {tmp_path / 'quick'}/."
    assert recorder.number == "01" and recorder.folders.models == tmp_path / "quick" / "models"
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])
    recorder.save_run("classic_cnn", model, Evaluation(np.eye(10)[[1]], np.array([1]), 0.25, 0.5),
                      training_log(seconds=1.0, epoch_seconds=[1]))
    assert capsys.readouterr().out == ("Classic CNN: test accuracy 25.0% (quick mode: the text "
                                       "describes the full run)\n")  # beside every result


def test_recorder_saves_runs_from_training_and_evaluation(tmp_path):
    import keras

    from cifar_utils.metrics import Evaluation

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])
    model.layers[0].trainable = False
    evaluation = Evaluation(probabilities=np.eye(10)[[1, 2, 3]], predictions=np.array([1, 2, 3]),
                            accuracy=2 / 3, loss=0.5)
    training = training_log(seconds=12.345, epoch_seconds=[4, 4, 4])
    recorder = make_recorder(tmp_path)
    path = recorder.save_run("frozen", model, evaluation, training, extra_seconds=100,
                             head="large")
    record = json.loads(path.read_text())
    assert path.name == "02_frozen.json" and record["notebook"] == "02_mobilenetv2_frozen.ipynb"
    assert record["params_total"] == 50 and record["params_trainable"] == 0
    assert record["test_accuracy"] == pytest.approx(2 / 3) and record["test_images"] == 3
    assert record["data_provenance"]["md5"] == {"test_batch": "abc"}
    assert record["train_seconds"] == 112.3 and record["epochs"] == 3 and record["head"] == "large"
    assert record["model"] == "frozen" and record["image_size"] == 4  # from the model's input
    assert np.load(recorder.folders.results / record["predictions_file"]).tolist() == [1, 2, 3]


def test_recorder_prints_the_accuracy_and_the_gain_over_a_baseline_in_points(tmp_path, capsys):
    import keras

    from cifar_utils.metrics import Evaluation

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])
    training = training_log(seconds=1.0, epoch_seconds=[1])
    recorder = make_recorder(tmp_path, "01_baseline_cnn")
    for name, accuracy in [("improved_cnn", 0.85), ("classic_cnn", 0.763), ("improved_cnn", 0.86)]:
        evaluation = Evaluation(np.eye(10)[[1]], np.array([1]), accuracy, 0.5)
        recorder.save_run(name, model, evaluation, training)
    lines = capsys.readouterr().out.splitlines()[-3:]
    assert lines == [  # a missing baseline (an exercise's own folder) is said, not an error
        f"Improved CNN: test accuracy 85.0% (no 01_classic_cnn run in {tmp_path / 'out'}/ to compare "
        "with: run its cells with this OUTPUT_DIR for the gain)",
        "Classic CNN: test accuracy 76.3%",
        "Improved CNN: test accuracy 86.0% (+9.7 points over the Classic CNN)"]


def test_recorder_shows_only_this_notebook_and_earlier_ones(tmp_path):
    recorder = make_recorder(tmp_path)
    for run in ("01_cnn", "02_frozen", "03_finetuned"):
        save_results(run, recorder.folders.results, test_accuracy=0.5)
    assert recorder.results()["run"].tolist() == ["01_cnn", "02_frozen"]


def test_recorder_names_figures_after_the_notebook(tmp_path):
    from cifar_utils.plots import plot_history

    recorder = make_recorder(tmp_path, "00_data_tour")
    path = recorder.save_figure(plot_history({"loss": [1, 0.5], "accuracy": [0.5, 0.7]}), "curves")
    assert path == tmp_path / "out" / "figures" / "00_curves.png" and path.is_file()


def test_save_model_names_the_file_after_the_notebook(tmp_path):
    import keras

    recorder = make_recorder(tmp_path, "01_baseline_cnn")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = recorder.save_model(model, "improved_cnn")
    assert path == tmp_path / "out" / "models" / "01_improved_cnn.keras" and path.is_file()


def test_a_saved_model_loads_without_the_custom_loss_it_was_trained_with(tmp_path):
    """Notebook 05 trains its student with a loss written in a cell, then saves the student
    inside a wrapper; notebook 04, `trained_model` and `make ship-models` must load it as is."""
    import keras

    def loss(targets, outputs):  # a closure in a cell: not serialisable
        return keras.ops.mean((targets - outputs) ** 2, axis=-1)

    student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="student")
    student.compile(keras.optimizers.Adam(), loss=loss, metrics=[keras.metrics.MeanMetricWrapper(
        lambda targets, outputs: keras.ops.mean(outputs), name="custom")])
    student.fit(np.ones((8, 4)), np.zeros((8, 2)), epochs=1, verbose=0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Softmax()(student(inputs)), name="distilled")
    path = make_recorder(tmp_path, "05_distillation").save_model(model, "distilled_cnn")
    loaded = keras.saving.load_model(path, compile=False)
    x = np.random.default_rng(0).normal(size=(3, 4))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    assert student.compiled and student.optimizer is not None  # the notebook's model is unchanged


def test_results_table_is_formatted_for_people(tmp_path):
    save_results("01_cnn", tmp_path, model="Improved CNN", notebook="01_baseline_cnn.ipynb",
                 test_accuracy=0.86012, params_total=409_290, params_trainable=408_000,
                 train_seconds=1492.0, image_size=32, test_time_augmentation="mirror")
    save_results("02_frozen", tmp_path, model="Frozen", notebook="02_mobilenetv2_frozen.ipynb",
                 test_accuracy=0.8, params_total=3_580_000, params_trainable=1_320_000,
                 train_seconds=95.0, image_size=160, test_time_augmentation=None)
    table = results_table(load_results(tmp_path))
    assert table.loc["Improved CNN"].tolist() == ["01", "86.0%", "409,290", "408,000", "24.9 min",
                                                  "32×32", "yes"]
    assert table.loc["Frozen", "training time"] == "95 s"
    assert table.loc["Frozen", "trained parameters"] == "1,320,000"
    assert table.loc["Frozen", "mirror averaging"] == "no"
    assert "0x" not in repr(table)  # no memory address in the text form


def test_results_table_shows_shipping_columns_only_for_rows_that_have_them(tmp_path):
    """Notebook 01's table, read while notebook 04's files exist, has no empty columns."""
    save_results("01_cnn", tmp_path, model="Improved CNN", notebook="01_baseline_cnn.ipynb",
                 test_accuracy=0.86, params_total=409_290, params_trainable=408_000,
                 train_seconds=1492.0, image_size=32)
    save_results("04_cnn_int8", tmp_path, model="Improved CNN (LiteRT int8)",
                 notebook="04_inside_and_shipping.ipynb", test_accuracy=0.85,
                 params_total=409_290, params_trainable=408_000, train_seconds=1492.0,
                 image_size=32, megabytes=0.44, median_ms_2_threads=0.8)
    results = load_results(tmp_path)
    assert "file size" not in results_table(results[results["run"].str[:2] <= "01"])
    table = results_table(results)
    assert table.loc["Improved CNN (LiteRT int8)", "file size"] == "0.44 MB"
    assert table.loc["Improved CNN", "latency (2 threads)"] == "—"


def test_a_saved_model_keeps_its_standardisation_statistics(tmp_path):
    """Notebook 01 saves its CNN with an adapted Normalization inside; 04 loads it as is."""
    import keras

    pixels = np.random.default_rng(0).uniform(0, 255, size=(20, 32, 32, 3)).astype("float32")
    standardize = keras.layers.Normalization()
    standardize.adapt(pixels)
    net = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D(),
                            keras.layers.Dense(3, activation="softmax")], name="net")
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, net(standardize(inputs), training=False), name="improved_cnn")
    model.compile("adam", "sparse_categorical_crossentropy")
    make_recorder(tmp_path, "01_baseline_cnn").save_model(model, "improved_cnn")
    later = make_recorder(tmp_path, "04_inside_and_shipping")
    loaded = later.load_model("01_improved_cnn")
    assert loaded.name == "improved_cnn" and not loaded.compiled  # to compile as one likes
    np.testing.assert_allclose(loaded.predict(pixels, verbose=0),
                               model.predict(pixels, verbose=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(loaded.predict(pixels, verbose=0),
                           net.predict(pixels, verbose=0))  # the statistics are applied


def test_each_shipped_variant_is_saved_as_a_run_carrying_its_source_models_training(tmp_path):
    import pandas as pd

    trainer = make_recorder(tmp_path, "01_baseline_cnn")
    save_results("01_cnn", trainer.folders.results, model="CNN", params_total=400,
                 params_trainable=390, train_seconds=1500.0, image_size=32)
    recorder = make_recorder(tmp_path, "04_inside_and_shipping")
    table = pd.DataFrame({"megabytes": [1.6, 0.4], "test_accuracy": [0.75, 0.5],
                          "median_ms_tf_threads": [9.0, np.nan],
                          "median_ms_2_threads": [np.nan, 1.5]}, index=["keras", "int8"])
    predictions = {"keras": np.array([1, 2, 3, 4]), "int8": np.array([1, 2, 0, 0])}
    source = recorder.load_run("01_cnn")
    paths = recorder.save_variants("cnn", "CNN", table, predictions, source=source)
    assert [p.name for p in paths] == ["04_cnn_keras.json", "04_cnn_int8.json"]
    keras_record, int8 = (json.loads(p.read_text()) for p in paths)
    assert keras_record["model"] == "CNN (Keras)" and int8["model"] == "CNN (LiteRT int8)"
    assert int8["variant"] == "int8" and int8["source_run"] == "01_cnn"
    assert int8["test_accuracy"] == 0.5 and int8["test_images"] == 4
    assert (int8["params_total"], int8["train_seconds"], int8["image_size"]) == (400, 1500.0, 32)
    assert int8["megabytes"] == 0.4 and int8["median_ms_2_threads"] == 1.5
    assert int8["median_ms_tf_threads"] is None  # not measured: null, not NaN, in the JSON
    assert int8["notebook"] == "04_inside_and_shipping.ipynb"
    assert np.load(recorder.folders.results / int8["predictions_file"]).tolist() == [1, 2, 0, 0]


def tiny_model(name):
    import keras
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")],
                            name=name)


def ship_a_run(tmp_path, monkeypatch, run="01_improved_cnn"):
    """A checkout in `tmp_path` whose models/ ships `run`, as `tools/ship_models.py` writes it."""
    import ship_models

    import cifar_utils.files as files
    monkeypatch.setattr(files, "repository_root", lambda: tmp_path / "checkout")
    trained = make_recorder(tmp_path / "trained", "01_baseline_cnn")
    import keras
    inner = tiny_model("cnn")
    inner.compile("adam", "sparse_categorical_crossentropy")
    inner.fit(np.zeros((2, 4)), np.zeros(2), verbose=0)  # Adam's moments: optimizer state
    inputs = keras.Input((4,))  # as notebook 01 ships its CNN: wrapped, compiled inside
    model = keras.Model(inputs, inner(inputs), name="shipped_cnn")
    model.save(trained.folders.models / f"{run}.keras")
    save_results(run, trained.folders.results, model="Improved CNN", test_accuracy=0.8566,
                 notebook="01_baseline_cnn.ipynb", commit="0123456789abcdef")
    return ship_models.ship([run], models=trained.folders.models,
                            results=trained.folders.results, target=tmp_path / "checkout" / "models")


def test_notebook_04_uses_the_shipped_model_when_none_was_trained_here(tmp_path, monkeypatch,
                                                                        capsys):
    shipped = ship_a_run(tmp_path, monkeypatch)
    assert [p.name for p in shipped] == ["01_improved_cnn.keras", "01_improved_cnn.json"]
    later = make_recorder(tmp_path / "fresh", "04_inside_and_shipping")
    capsys.readouterr()
    model, record = later.trained_model("01_improved_cnn")
    assert model.name == "shipped_cnn" and not model.compiled
    assert record["commit"] == "0123456789abcdef" and record["notebook"] == "01_baseline_cnn.ipynb"
    assert capsys.readouterr().out == ("Improved CNN: the repository's, from notebook 01 at "
                                       "commit 0123456; test accuracy 85.7%\n")
    with pytest.raises(FileNotFoundError, match="01_improved_cnn.keras is missing from .*: run "
                                                "notebook 01 first"):
        later.trained_model("01_improved_cnn", "yours")
    with pytest.raises(FileNotFoundError, match="models/03_finetuned_mobilenetv2.keras is not "
                                                "in this checkout"):
        later.trained_model("03_finetuned_mobilenetv2")
    with pytest.raises(ValueError, match="choose 'auto', 'yours' or 'shipped'"):
        later.trained_model("01_improved_cnn", "mine")


def test_notebook_04_prefers_the_model_you_trained_and_says_so(tmp_path, monkeypatch, capsys):
    ship_a_run(tmp_path, monkeypatch)
    yours = make_recorder(tmp_path / "yours", "01_baseline_cnn")
    tiny_model("your_cnn").save(yours.folders.models / "01_improved_cnn.keras")
    save_results("01_improved_cnn", yours.folders.results, model="Improved CNN",
                 test_accuracy=0.5)
    later = make_recorder(tmp_path / "yours", "04_inside_and_shipping")
    capsys.readouterr()
    model, record = later.trained_model("01_improved_cnn")
    assert model.name == "your_cnn" and record["test_accuracy"] == 0.5
    assert capsys.readouterr().out.startswith("Improved CNN: yours, trained by notebook 01 (in ")
    model, _ = later.trained_model("01_improved_cnn", "shipped")  # a parameter chooses
    assert model.name == "shipped_cnn"


def test_shipping_refuses_models_over_the_size_limit_and_keeps_the_shipped_ones(tmp_path,
                                                                               monkeypatch):
    import keras
    import ship_models
    shipped = ship_a_run(tmp_path, monkeypatch)
    before = {p.name: p.read_bytes() for p in shipped}
    trained = tmp_path / "trained" / "out"
    with pytest.raises(SystemExit, match="over the 0 MB limit: nothing was shipped"):
        ship_models.ship(["01_improved_cnn"], models=trained / "models",
                         results=trained / "results", target=shipped[0].parent, limit_mb=1e-6)
    assert {p.name: p.read_bytes() for p in shipped[0].parent.iterdir()} == before
    save_results("05_distilled_cnn", trained / "results", commit="abc")
    keras.Sequential([keras.Input((4,))], name="distilled").save(trained / "models" / "05_distilled_cnn.keras")
    size = sum(p.stat().st_size for p in shipped) / 1e6  # one model alone fits, not beside the others
    with pytest.raises(SystemExit, match="nothing was shipped"):
        ship_models.ship(["05_distilled_cnn"], models=trained / "models",
                         results=trained / "results", target=shipped[0].parent, limit_mb=size)
    assert {p.name: p.read_bytes() for p in shipped[0].parent.iterdir()} == before
    with pytest.raises(SystemExit, match="03_finetuned_mobilenetv2.keras is missing: run "
                                         "notebook 03 in full mode first"):
        save_results("03_finetuned_mobilenetv2", trained / "results", commit="abc")
        ship_models.ship(["03_finetuned_mobilenetv2"], models=trained / "models",
                         results=trained / "results", target=shipped[0].parent)


def test_a_shipped_model_carries_no_optimizer_state(tmp_path, monkeypatch):
    """Not even a nested model's, and it loads without a warning about a missing one."""
    import io
    import warnings
    import zipfile

    import h5py
    import keras

    def optimizer_paths(path):
        weights = zipfile.ZipFile(path).read("model.weights.h5")
        with h5py.File(io.BytesIO(weights)) as h5:
            names = []
            h5.visit(names.append)
        return [name for name in names if "optimizer" in name]

    shipped = ship_a_run(tmp_path, monkeypatch)
    trained = tmp_path / "trained" / "out" / "models" / "01_improved_cnn.keras"
    assert optimizer_paths(trained)  # the nested model's Adam state
    assert optimizer_paths(shipped[0]) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = keras.saving.load_model(shipped[0], compile=False)
    x = np.random.default_rng(0).normal(size=(3, 4))
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               keras.saving.load_model(trained, compile=False).predict(
                                   x, verbose=0), rtol=1e-6)


def test_a_results_record_names_the_commit_it_was_made_from(tmp_path):
    import subprocess
    record = json.loads(save_results("01_cnn", tmp_path, test_accuracy=0.5).read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=os.path.dirname(__file__)).stdout.strip()
    assert record["commit"] == (head or None)


def test_a_missing_model_is_none_when_allowed_else_an_error_saying_what_to_run(tmp_path):
    recorder = make_recorder(tmp_path, "03_mobilenetv2_finetune")
    assert recorder.load_model("02_frozen_head", missing_ok=True) is None
    with pytest.raises(FileNotFoundError, match="02_frozen_head.keras is missing from .*: run "
                                                "notebook 02 first"):
        recorder.load_model("02_frozen_head")
    (recorder.folders.models / "02_frozen_head.keras").mkdir()  # a folder, not a saved model
    assert recorder.load_model("02_frozen_head", missing_ok=True) is None


def test_load_run_reads_a_record_back_or_says_none(tmp_path):
    frozen = make_recorder(tmp_path, "02_mobilenetv2_frozen")
    save_results("02_frozen_mobilenetv2", frozen.folders.results, test_accuracy=0.85,
                 train_seconds=321.0)
    later = make_recorder(tmp_path, "03_mobilenetv2_finetune")
    record = later.load_run("02_frozen_mobilenetv2")
    assert record["run"] == "02_frozen_mobilenetv2" and record["train_seconds"] == 321.0
    assert record["test_accuracy"] == 0.85 and "tensorflow_version" in record
    assert later.load_run("02_never_saved") is None
    with pytest.raises(FileNotFoundError, match="02_never_saved.json is missing from .*: run "
                                                "notebook 02 first"):
        later.load_run("02_never_saved", missing_ok=False)
    (later.folders.results / "02_broken.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="02_broken.json is not a results record"):
        later.load_run("02_broken")


def test_run_fields_are_what_every_table_reads():
    import keras

    from cifar_utils.metrics import Evaluation
    from cifar_utils.results import run_fields

    model = keras.Sequential([keras.Input((160, 160, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(10)])
    model.layers[-1].trainable = False
    evaluation = Evaluation(np.eye(10)[[1, 2]], np.array([1, 2]), 0.5, 1.25)
    fields = run_fields("Frozen", model, evaluation, training_log(seconds=10.04,
                                                                  epoch_seconds=[5, 5]),
                        extra_seconds=2.0)
    assert fields.pop("predictions").tolist() == [1, 2]
    assert fields == {"model": "Frozen", "test_accuracy": 0.5, "test_loss": 1.25,
                      "test_images": 2, "params_total": 40, "params_trainable": 0,
                      "train_seconds": 12.0, "epochs": 2, "image_size": 160}
    assert type(fields["image_size"]) is int and type(fields["epochs"]) is int  # JSON-ready


def test_variant_fields_place_a_variant_by_its_trained_model():
    import pandas as pd

    from cifar_utils.results import variant_fields

    values = pd.Series({"megabytes": np.float64(0.4), "test_accuracy": 0.5,
                        "median_ms_tf_threads": np.nan, "median_ms_2_threads": 1.5})
    source = {"run": "01_cnn", "params_total": 400, "params_trainable": 390,
              "train_seconds": 1500.0, "image_size": 32, "test_accuracy": 0.9}
    fields = variant_fields("CNN", "int8", values, np.array([1, 0]), source)
    assert fields.pop("predictions").tolist() == [1, 0]
    assert fields == {"megabytes": 0.4, "test_accuracy": 0.5, "median_ms_tf_threads": None,
                      "median_ms_2_threads": 1.5, "model": "CNN (LiteRT int8)",
                      "variant": "int8", "source_run": "01_cnn", "test_images": 2,
                      "params_total": 400, "params_trainable": 390, "train_seconds": 1500.0,
                      "image_size": 32}  # the variant's accuracy, not the source's
    assert variant_fields("CNN", "keras", values, np.array([1]), source)["model"] == "CNN (Keras)"
    assert variant_fields("CNN", "int8_selective", values, np.array([1]), source)["model"] == \
        "CNN (LiteRT mixed int8/float)"  # it keeps float layers: not int8 alone


def test_every_record_names_the_cpu_with_the_features_that_set_its_speed(tmp_path, monkeypatch):
    from cifar_utils import results

    path = results.save_results("01_cnn", tmp_path, test_accuracy=0.5)
    assert json.loads(path.read_text())["cpu"] == results.cpu()
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nmodel name : Intel(R) Xeon(R) Processor @ 2.80GHz\n"
                    "flags : fpu sse avx2 avx512f avx512_vnni\n")
    real = results.Path
    monkeypatch.setattr(results, "Path", lambda p: info if p == "/proc/cpuinfo" else real(p))
    monkeypatch.setattr("os.sched_getaffinity", lambda _: {0, 1})
    assert results.cpu() == "2 cores of Intel(R) Xeon(R) Processor @ 2.80GHz (AVX2, AVX-512, VNNI)"
