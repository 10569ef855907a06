"""What a notebook saves (runs, figures, trained models) and the tables read back from it.

One run is one trained model: its record goes to `results/<run>.json`, its test predictions to
`results/<run>_test_predictions.npy`, so that anyone can recompute the accuracy."""

from __future__ import annotations

import contextlib
import functools
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .files import output_folders, repository_root, shipped_file, write_atomic
from .plots import save_figure

_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
RUNS = {  # run: (the model's name in every table, the run its gain is measured against)
    "01_classic_cnn": ("Classic CNN", None),
    "01_improved_cnn": ("Improved CNN", "01_classic_cnn"),
    "02_classic_frozen": ("Classic frozen MobileNetV2", None),
    "02_frozen_mobilenetv2": ("Frozen MobileNetV2", "02_classic_frozen"),
    "03_classic_finetune": ("Classic fine-tuned MobileNetV2", None),
    "03_finetuned_mobilenetv2": ("Fine-tuned MobileNetV2", "03_classic_finetune"),
    "05_distilled_cnn": ("Distilled CNN", "01_improved_cnn"),
}
_NOTEBOOK_NAME = re.compile(r"^(\d\d)_[A-Za-z0-9_]+$")


def save_results(run, directory="results", *, predictions=None, **fields) -> Path:
    """Write `<directory>/<run>.json` (`fields`, and where, when and from which commit it ran)
    and `predictions` (the predicted class of each test image) as `<run>_test_predictions.npy`."""
    import tensorflow as tf
    if not _RUN_NAME.match(str(run)):
        raise ValueError(f"run name {run!r} must be letters, digits, '_', '-' or '.', "
                         "e.g. '02_frozen_mobilenetv2'")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    record = {"run": run, **fields, "tensorflow_version": tf.__version__,
              "device": _device(tf), "cpu": cpu(),
              "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    record.setdefault("commit", _commit())
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
    """All saved runs in `directory`, one row each, sorted by run name; a file that is not a
    results record raises a `ValueError` naming it, instead of becoming a row of NaN."""
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


def _device(tf) -> str:
    gpus = tf.config.list_physical_devices("GPU")
    details = tf.config.experimental.get_device_details(gpus[0]) if gpus else {}
    return f"GPU ({details.get('device_name', gpus[0].name)})" if gpus else "CPU"


def cpu() -> str:
    """The cores, the CPU's model and the vector features that change TensorFlow's speed on
    it, e.g. "2 cores of Intel(R) Xeon(R) Processor @ 2.80GHz (AVX2, AVX-512, VNNI)"."""
    import os
    import platform
    cores = f"{len(os.sched_getaffinity(0))} cores of "
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux
        return cores + (platform.processor() or platform.machine())
    model = re.search(r"^model name\s*:\s*(.*)$", info, re.MULTILINE)
    flags = set((re.search(r"^flags\s*:(.*)$", info, re.MULTILINE) or ["", ""])[1].split())
    named = [name for flag, name in (("avx2", "AVX2"), ("avx512f", "AVX-512"),
                                     ("avx512_vnni", "VNNI"), ("amx_tile", "AMX")) if flag in flags]
    return f"{cores}{model.group(1) if model else platform.machine()} ({', '.join(named) or 'no AVX2'})"


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


def run_fields(model_name, model, evaluation, training, *, extra_seconds=0.0):
    """The fields every table reads, for one trained `model` (whole, images to classes); the
    `extra_seconds` of feature extraction or an earlier stage count as training time."""
    from .models import count_params
    params = count_params(model)
    image_size = model.input_shape[1]  # square images
    return dict(model=model_name, predictions=evaluation.predictions,
                test_accuracy=evaluation.accuracy, test_loss=evaluation.loss,
                test_images=len(evaluation.predictions), params_total=params["total"],
                params_trainable=params["trainable"],
                train_seconds=round(float(training.seconds + extra_seconds), 1),
                epochs=len(training.epoch_seconds), image_size=int(image_size))


def variant_fields(model_name, row, values, predictions, source) -> dict:
    """The fields of one row of `shipping.measure_variants`, with the parameters, training time
    and input size of `source`, the trained model's record, so that every chart can place it."""
    label = {"keras": "Keras", "dynamic": "LiteRT dynamic range",
             "int8_selective": "LiteRT mixed int8/float"}.get(row, f"LiteRT {row}")
    measured = {key: None if np.isnan(value) else float(value)  # JSON has no NaN
                for key, value in values.items()}
    return dict(measured, model=f"{model_name} ({label})", variant=row,
                source_run=source["run"], predictions=predictions, test_images=len(predictions),
                **{key: source[key] for key in ("params_total", "params_trainable",
                                                "train_seconds", "image_size")})


class Recorder:
    """Saves and loads one notebook's runs, figures and models (`notebook`: its file name
    without `.ipynb`, whose number prefixes them), with the data's `provenance`, in the
    folders of `files.output_folders(output_dir, quick=quick)`, checked before training."""

    def __init__(self, notebook, provenance, output_dir=None, *, quick=False):
        if not _NOTEBOOK_NAME.match(str(notebook)):
            raise ValueError(f"notebook {notebook!r} must be a notebook's file name without "
                             "'.ipynb', e.g. '01_baseline_cnn'")
        self.notebook, self.number, self.provenance = notebook, notebook[:2], provenance
        self.quick = quick
        self.folders = output_folders(output_dir, quick=quick).create()
        if quick:
            print("QUICK MODE: small subsets and few epochs, to check that everything runs; the "
                  "numbers below are NOT the results the text describes.")
        print(f"Figures, results and trained models are saved in {self.folders.shown}.")

    def save_run(self, name, model, evaluation, training, *, extra_seconds=0.0, **settings) -> Path:
        """Save run `<number>_<name>` (`run_fields`, and `settings` such as the learning rate);
        print its test accuracy and the gain over its baseline in `RUNS`, if saved in the folder."""
        run = f"{self.number}_{name}"
        model_name, baseline = RUNS.get(run, (name, None))
        reference = baseline and self.load_run(baseline)
        line = f"{model_name}: test accuracy {evaluation.accuracy:.1%}"
        if reference:
            gain = 100 * (evaluation.accuracy - reference["test_accuracy"])
            line += f" ({gain:+.1f} points over the {reference['model']})"
        elif baseline:
            line += (f" (no {baseline} run in {self.folders.shown} to compare with: run its "
                     "cells with this OUTPUT_DIR for the gain)")
        print(line + (" (quick mode: the text describes the full run)" if self.quick else ""))
        fields = run_fields(model_name, model, evaluation, training, extra_seconds=extra_seconds)
        return self._save(name, **fields, **settings)

    def save_variants(self, name, model_name, table, predictions, *, source) -> list:
        """Save each row of `shipping.measure_variants` as run `<number>_<name>_<row>`, the
        exports of the model whose results record is `source` (`trained_model`)."""
        return [self._save(f"{name}_{row}", **variant_fields(model_name, row, values,
                                                             predictions[row], source))
                for row, values in table.iterrows()]

    def _save(self, name, *, predictions, **fields) -> Path:
        return save_results(f"{self.number}_{name}", self.folders.results,
                            predictions=predictions, notebook=f"{self.notebook}.ipynb",
                            data_provenance=self.provenance, **fields)

    def save_figure(self, fig, name) -> Path:
        """Save `fig` as `figures/<number>_<name>.png`."""
        return save_figure(fig, f"{self.number}_{name}", self.folders.figures)

    def save_model(self, model, name) -> Path:
        """Save a trained model as `models/<number>_<name>.keras`, for a later notebook to
        predict with: without training state (`prediction_only`)."""
        with prediction_only(model):
            model.save(path := self.folders.models / f"{self.number}_{name}.keras")
        return path

    def results(self) -> pd.DataFrame:
        """The saved runs of this notebook and of those before it (later ones may be stale)."""
        table = load_results(self.folders.results)
        return table[table["run"].str[:2] <= self.number].reset_index(drop=True)

    def load_run(self, run, *, missing_ok=True) -> dict | None:
        """The results record of run `run`, e.g. "02_frozen_mobilenetv2" (see `load_model`)."""
        path = self.folders.results / f"{run}.json"
        return _read_record(path) if _exists(path, missing_ok, self.folders.shown) else None

    def load_model(self, run, *, missing_ok=False):
        """The model an earlier notebook saved as run `run` (e.g. "01_improved_cnn"); if it
        is missing, None with `missing_ok`, else a `FileNotFoundError` saying what to run."""
        path = self.folders.models / f"{run}.keras"
        return _load_keras(path) if _exists(path, missing_ok, self.folders.shown) else None

    def trained_model(self, run, source="auto"):
        """The model of run `run` (e.g. "01_improved_cnn") and its results record; prints which.
        `source`: "yours" (saved when you ran its notebook), "shipped" (the repository's
        `models/`, from its full run) or "auto", yours if it exists, else the shipped one."""
        if source not in ("auto", "yours", "shipped"):
            raise ValueError(f"source={source!r}: choose 'auto', 'yours' or 'shipped'")
        if source == "auto":
            source = "yours" if (self.folders.models / f"{run}.keras").is_file() else "shipped"
        if source == "yours":
            model, record = self.load_model(run), self.load_run(run, missing_ok=False)
            where = f"yours, trained by notebook {run[:2]} (in {self.folders.shown})"
        else:
            model = _load_keras(shipped_file(f"{run}.keras"))
            record = _read_record(shipped_file(f"{run}.json"))
            where = f"the repository's, from notebook {run[:2]} at commit {record['commit'][:7]}"
        print(f"{record['model']}: {where}; test accuracy {record['test_accuracy']:.1%}")
        return model, record


@contextlib.contextmanager
def prediction_only(model):
    """`model`, inside the `with` block, with no optimizer or compile settings, its inner models
    included: saved so, it loads without the loss it was trained with (05's, written in a cell)
    and without Adam's moments, twice its weights. Restored after the block."""
    import keras
    models = [layer for layer in model._flatten_layers(include_self=True)
              if isinstance(layer, keras.Model) and layer.compiled]
    kept = [(m.optimizer, m.compiled, m._compile_config) for m in models]
    for m in models:
        m.optimizer, m.compiled, m._compile_config = None, False, None
    try:
        yield model
    finally:
        for m, (optimizer, compiled, config) in zip(models, kept, strict=True):
            m.optimizer, m.compiled, m._compile_config = optimizer, compiled, config


@functools.cache  # asked once per process, not once per results file
def _commit() -> str | None:
    """The commit checked out where the package runs from (None outside a git checkout)."""
    import subprocess
    if (root := repository_root()) is None:
        return None
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _load_keras(path):
    import keras
    return keras.saving.load_model(path, compile=False)


def _exists(path, missing_ok, shown) -> bool:
    if path.is_file() or missing_ok:
        return path.is_file()
    raise FileNotFoundError(f"{path.name} is missing from {shown}: run notebook {path.name[:2]} "
                            "first (it saves this file), with the same OUTPUT_DIR and mode.")


def results_table(results) -> pd.DataFrame:
    """Saved runs (`load_results`, `Recorder.results`) formatted for reading, as text:
    percent, thousands separators, minutes or seconds, width x height."""
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
        "mirror averaging": mirror.map(lambda value: "yes" if value == "mirror" else "no"),
    })
    if "megabytes" in results and results["megabytes"].notna().any():  # 04's exported models
        table["file size"] = results["megabytes"].map(
            lambda v: "—" if pd.isna(v) else f"{v:.2f} MB")
        table["latency (2 threads)"] = results["median_ms_2_threads"].map(
            lambda v: "—" if pd.isna(v) else f"{v:.1f} ms")
    return table.set_index("model")
