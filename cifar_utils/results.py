"""Saving each run's metrics to JSON and reading them back for comparison tables.

One run = one trained model. Its record (test accuracy and loss, parameter counts,
training time, image size, data provenance, TensorFlow version, device) goes to
`results/<run>.json`; its test-set predictions, when given, to
`results/<run>_test_predictions.npy`, so anyone can recompute the accuracy.
Files are written atomically: an interrupted notebook never leaves a half-written file.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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
                         "e.g. '02_frozen_large_head'")
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


def save_run(run, directory, *, model_name, notebook, model, evaluation, train_seconds,
             epochs, image_size, provenance, **extra) -> Path:
    """Save one trained model's results with the fields every comparison table reads.

    Args:
        run: file name, e.g. "01_improved_cnn".
        directory: the results folder.
        model_name: the label shown in tables and charts, e.g. "Improved CNN".
        notebook: the notebook that trained it.
        model: the complete Keras model (parameter counts include a frozen backbone).
        evaluation: `metrics.evaluate(...)` on the test split.
        train_seconds: wall time spent training (and extracting features, if any).
        epochs: epochs actually run.
        image_size: input size the model sees.
        provenance: the `DataProvenance` of the data used.
        **extra: anything else worth keeping (learning rate, head, unfrozen layers...).
    """
    from .models import count_params

    params = count_params(model)
    return save_results(
        run, directory, predictions=evaluation.predictions, model=model_name,
        notebook=notebook, test_accuracy=evaluation.accuracy, test_loss=evaluation.loss,
        test_images=len(evaluation.predictions), params_total=params["total"],
        params_trainable=params["trainable"], train_seconds=round(float(train_seconds), 1),
        epochs=int(epochs), image_size=int(image_size), data_provenance=provenance, **extra)


def load_results(directory="results") -> pd.DataFrame:
    """All saved runs in `directory` as a DataFrame, one row per run, sorted by run name."""
    directory = Path(directory)
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise FileNotFoundError(f"no results (*.json) in {directory}: run the notebooks "
                                "that train models first, or pass the right directory.")
    records = []
    for path in paths:
        try:
            records.append(json.loads(path.read_text()))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path.name} is not valid JSON ({err}); delete it or rerun the "
                             "notebook that wrote it.") from None
    return pd.DataFrame.from_records(records).sort_values("run", ignore_index=True)


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


def write_atomic(path: Path, write) -> None:
    """Call `write(file)` on a temporary file beside `path`, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; results are not
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
