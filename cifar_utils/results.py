"""What a notebook saves (results, figures, trained heads) and the tables read back from it.

One run = one trained model. Its record (test accuracy and loss, parameter counts,
training time, image size, data provenance, TensorFlow version, device) goes to
`results/<run>.json`; its test-set predictions to `results/<run>_test_predictions.npy`,
so anyone can recompute the accuracy. Files are written atomically: an interrupted
notebook never leaves a half-written file.

Notebooks use a `Recorder`, set up once with the notebook's name, the data's
provenance and the output folders: it saves each run from its training run and
evaluation, saves figures under the notebook's number, and passes the frozen heads
of notebook 02 on to notebook 03. `results_table` formats saved runs for reading.

Advanced: `save_results` and `load_results` read and write single records.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .files import output_folders, write_atomic

_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_NOTEBOOK_NAME = re.compile(r"^(\d\d)_[A-Za-z0-9_]+$")

FROZEN_HEADS = {"classic": "classic_frozen_head.keras", "ours": "frozen_head.keras"}
"""The heads notebook 02 trains on frozen features and notebook 03 fine-tunes from."""


def save_results(run, directory="results", *, predictions=None, **fields) -> Path:
    """Write `<directory>/<run>.json` with `fields` plus environment details.

    Args:
        run: a short file-name-safe name, e.g. "01_classic_cnn".
        directory: where results go (created if needed).
        predictions: optional predicted class per test image, in test-set order; saved
            as `<run>_test_predictions.npy` and named in the record's `predictions_file`.
        **fields: the metrics, e.g. `test_accuracy=0.81, params_total=2_257_984`.

    Adds `run`, `tensorflow_version`, `device` and `saved_at`. Rerunning a notebook
    replaces its own run's files, and only those. Returns the JSON path.
    """
    import tensorflow as tf

    from .training import device_name

    if not _RUN_NAME.match(str(run)):
        raise ValueError(f"run name {run!r} must be letters, digits, '_', '-' or '.', "
                         "e.g. '02_frozen_mobilenetv2'")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    record = {"run": run, **fields, "tensorflow_version": tf.__version__,
              "device": device_name(),
              "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if predictions is not None:
        predictions = np.asarray(predictions)
        if predictions.ndim != 1 or not np.issubdtype(predictions.dtype, np.integer):
            raise ValueError("predictions must be a 1-D integer array of predicted classes, "
                             f"got {predictions.dtype} of shape {predictions.shape}; "
                             "use probabilities.argmax(axis=1).")
        name = f"{run}_test_predictions.npy"
        write_atomic(directory / name, lambda f: np.save(f, predictions.astype(np.int64)))
        record["predictions_file"] = name
    path = directory / f"{run}.json"
    text = json.dumps(record, indent=2, default=_json_default) + "\n"
    write_atomic(path, lambda f: f.write(text.encode()))
    return path


def load_results(directory="results") -> pd.DataFrame:
    """All saved runs in `directory` as a DataFrame, one row per run, sorted by run name.

    A file that is not a results record (not UTF-8, not JSON, not an object with a
    `run` name) raises a `ValueError` naming it, instead of becoming a row of NaN.
    """
    directory = Path(directory)
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise FileNotFoundError(f"no results (*.json) in {directory}: run the notebooks "
                                "that train models first, or pass the right directory.")
    return pd.DataFrame.from_records([_read_record(path) for path in paths]) \
        .sort_values("run", ignore_index=True)


def _read_record(path: Path) -> dict:
    fix = "delete it or rerun the notebook that wrote it."
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{path.name} is not a results file (not UTF-8 text); {fix}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path.name} is not valid JSON ({err}); {fix}") from None
    if not isinstance(record, dict) or not isinstance(record.get("run"), str):
        found = "no 'run' name" if isinstance(record, dict) else f"a JSON {type(record).__name__}"
        raise ValueError(f"{path.name} is not a results record: expected a JSON object with "
                         f"a 'run' name, found {found}; {fix}")
    return record


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return value.name
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"cannot store {type(value).__name__} in a results file")


class Recorder:
    """Saves what one notebook produces, into folders checked before any training starts.

    Args:
        notebook: the notebook's file name without `.ipynb`, e.g. "01_baseline_cnn";
            its number prefixes every run and figure it saves.
        provenance: the `DataProvenance` of the data, stored with every run.
        output_dir: see `files.output_folders` (None: the repository's folders).
        quick: quick mode, which writes under `build/quick/` by default.
    """

    def __init__(self, notebook, provenance, output_dir=None, *, quick=False):
        match = _NOTEBOOK_NAME.match(str(notebook))
        if not match:
            raise ValueError(f"notebook {notebook!r} must be a notebook's file name without "
                             "'.ipynb', e.g. '01_baseline_cnn'")
        self.notebook, self.number = notebook, match.group(1)
        self.provenance = provenance
        self.folders = output_folders(output_dir, quick=quick).create()
        if quick:
            print("QUICK MODE: small subsets and few epochs, to check that everything runs; "
                  "the numbers of trained models below are NOT the real results.")
        print(f"Figures, results and trained heads are saved in {self.folders.shown}.")

    def save_run(self, name, model_name, model, evaluation, training, *, image_size,
                 extra_seconds=0.0, baseline=None, **extra) -> Path:
        """Save one trained model as run `<number>_<name>`; print its test accuracy.

        The record holds what every table reads. The printed line compares the model
        with `baseline`, a run of this notebook saved before it, in points.

        Args:
            name: the run's name within the notebook, e.g. "improved_cnn".
            model_name: its label in tables and charts, e.g. "Improved CNN".
            model: the complete Keras model (parameter counts include a frozen backbone).
            evaluation: `metrics.evaluate(...)` on the test split.
            training: the `training.TrainingRun` that trained it (time and epochs).
            image_size: the input size the model sees.
            extra_seconds: time spent before `training` that the model needed (feature
                extraction, an earlier training stage), added to its training time.
            baseline: the name of the run to compare with, e.g. "classic_cnn".
            **extra: anything else worth keeping (learning rate, head, test-time mirror...).
        """
        from .models import count_params

        line = f"{model_name}: test accuracy {evaluation.accuracy:.1%}"
        if baseline is not None:
            reference = _read_record(self.folders.results / f"{self.number}_{baseline}.json")
            gain = 100 * (evaluation.accuracy - reference["test_accuracy"])
            line += f" ({gain:+.1f} points over the {reference['model']})"
        print(line)
        params = count_params(model)
        return save_results(
            f"{self.number}_{name}", self.folders.results, predictions=evaluation.predictions,
            model=model_name, notebook=f"{self.notebook}.ipynb",
            test_accuracy=evaluation.accuracy, test_loss=evaluation.loss,
            test_images=len(evaluation.predictions), params_total=params["total"],
            params_trainable=params["trainable"],
            train_seconds=round(float(training.seconds + extra_seconds), 1),
            epochs=int(training.epochs), image_size=int(image_size),
            data_provenance=self.provenance, **extra)

    def save_figure(self, fig, name) -> Path:
        """Save `fig` as `figures/<number>_<name>.png`."""
        from .plots import save_figure

        return save_figure(fig, f"{self.number}_{name}", self.folders.figures)

    def evaluation_report(self, test, evaluation, *, seed=0) -> pd.DataFrame:
        """Notebook 01's views of a model's test predictions, in one call for later notebooks.

        Draws and saves the confusion matrix, a grid of predictions and the most
        confident mistakes (Jupyter shows every figure a cell draws), and returns the
        per-class table. `test` is the test split, `evaluation` from `metrics.evaluate`.
        """
        from .metrics import classification_table
        from .plots import plot_confident_mistakes, plot_confusion_matrix, plot_predictions

        self.save_figure(plot_confusion_matrix(test.labels, evaluation.predictions),
                         "confusion_matrix")
        self.save_figure(plot_predictions(*test, evaluation.predictions, n=24, seed=seed),
                         "predictions")
        self.save_figure(plot_confident_mistakes(*test, evaluation.probabilities, n=16),
                         "confident_mistakes")
        return classification_table(test.labels, evaluation.predictions)

    def results(self) -> pd.DataFrame:
        """The saved runs of this notebook and the ones before it in the series.

        Rows of later notebooks are left out: they may come from another run.
        """
        table = load_results(self.folders.results)
        return table[table["run"].str[:2] <= self.number].reset_index(drop=True)

    def save_frozen_head(self, head, which):
        """Save a head trained on frozen features (`which`: "classic" or "ours") for notebook 03."""
        head.save(self._head_path(which))

    def frozen_head(self, which, features, *, run, epochs=None):
        """Notebook 02's head `which` ("classic" or "ours"): loaded, or trained here.

        Without notebook 02's saved head (a notebook assigned on its own, a first run in
        Colab) it is trained now on the pooled `features`, as notebook 02 does
        (`finetune.train_frozen_head`, at most `epochs`, by default the recipe's own
        maximum), and saved for next time: slower, not broken.
        Returns `(head, seconds)`: the time the frozen stage took, from notebook 02's
        results file `run` (e.g. "02_frozen_mobilenetv2") or as measured here.
        """
        import keras

        from .finetune import train_frozen_head
        from .training import distribution_strategy

        path = self._head_path(which)
        if path.is_file():
            with distribution_strategy().scope():
                head = keras.saving.load_model(path, compile=False)
            record = self.folders.results / f"{run}.json"
            seconds = _read_record(record)["train_seconds"] if record.is_file() \
                else features.seconds
            return head, seconds
        label = {"classic": "classic frozen head", "ours": "frozen head"}[which]
        print(f"Notebook 02's {label} is not in {self.folders.shown}: training it here, as "
              "notebook 02 does (slower than running 02 first, not broken).")
        head, training = train_frozen_head(which, features, epochs=epochs)
        self.save_frozen_head(head, which)
        return head, features.seconds + training.seconds

    def save_model(self, model, name) -> Path:
        """Save a trained model as `models/<number>_<name>.keras` for a later notebook."""
        path = self.folders.models / f"{self.number}_{name}.keras"
        model.save(path)
        return path

    def load_model(self, run):
        """A model an earlier notebook saved with `save_model`, e.g. "01_improved_cnn"."""
        import keras

        from .training import distribution_strategy

        path = self.folders.models / f"{run}.keras"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path.name} is missing from {self.folders.shown}: run notebook {run[:2]} "
                "first (it trains and saves this model), with the same OUTPUT_DIR and mode.")
        with distribution_strategy().scope():
            return keras.saving.load_model(path, compile=False)

    def save_variants(self, name, model_name, table, predictions, *, source_run):
        """Save every row of `shipping.compare_variants` as run `<number>_<name>_<row>`.

        Each record holds the accuracy, file size and latencies of one variant, with the
        training time, input size and parameter count of `source_run` (the results file
        of the trained model, e.g. "01_improved_cnn"), so that every chart of the
        series can place it. Returns the paths.
        """
        source_path = self.folders.results / f"{source_run}.json"
        if not source_path.is_file():
            raise FileNotFoundError(
                f"no results file {source_path.name} in {self.folders.results}: run notebook "
                f"{source_run[:2]}, which trains that model, before saving its variants.")
        source = _read_record(source_path)
        paths = []
        for row, values in table.iterrows():
            fields = {key: None if np.isnan(value) else float(value)  # JSON has no NaN
                      for key, value in values.items() if key != "test_accuracy"}
            label = "Keras" if row == "keras" else f"LiteRT {row}"
            paths.append(save_results(
                f"{self.number}_{name}_{row}", self.folders.results,
                predictions=predictions[row], model=f"{model_name} ({label})",
                notebook=f"{self.notebook}.ipynb", variant=row, source_run=source_run,
                test_accuracy=float(values["test_accuracy"]),
                test_images=len(predictions[row]), params_total=source["params_total"],
                params_trainable=source["params_trainable"],
                train_seconds=source["train_seconds"], image_size=source["image_size"],
                data_provenance=self.provenance, **fields))
        return paths

    def _head_path(self, which) -> Path:
        if which not in FROZEN_HEADS:
            raise ValueError(f"which must be one of {sorted(FROZEN_HEADS)}, got {which!r}")
        return self.folders.models / FROZEN_HEADS[which]


def results_table(results) -> pd.DataFrame:
    """Saved runs (from `load_results` or `Recorder.results`) formatted for reading.

    Accuracy in percent, parameters with thousands separators, training time in
    minutes or seconds, image size as width x height. For display only: the numbers
    become text.
    """
    from .training import format_duration

    mirror = results.get("test_time_augmentation", pd.Series(index=results.index, dtype=object))
    table = pd.DataFrame({
        "model": results["model"],
        "notebook": results["notebook"].str[:2],
        "test accuracy": results["test_accuracy"].map("{:.1%}".format),
        "parameters": results["params_total"].map("{:,}".format),
        "trained parameters": results["params_trainable"].map("{:,}".format),
        "training time": results["train_seconds"].map(format_duration),
        "image size": results["image_size"].map(lambda size: f"{size}×{size}"),
        "test-time mirror": mirror.map(lambda value: "yes" if value == "mirror" else "no"),
    })
    if "megabytes" in results and results["megabytes"].notna().any():  # 04's exported models
        table["file size"] = results["megabytes"].map(
            lambda v: "—" if pd.isna(v) else f"{v:.2f} MB")
        table["latency (2 threads)"] = results["median_ms_2_threads"].map(
            lambda v: "—" if pd.isna(v) else f"{v:.1f} ms")
    return table.set_index("model")
