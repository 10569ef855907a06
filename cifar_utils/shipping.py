"""Measuring shipped models: LiteRT (`.tflite`) files, their accuracy, size and latency.

Notebook 04 writes out how each variant is converted; this module runs the files in the
LiteRT interpreter (`LiteRTModel`), measures them side by side, and ranks the layers where
int8 errs. Nothing here re-implements quantization: int8 scales are read from the model.
"""

from __future__ import annotations

import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from . import muted_native_logs  # the converter and the interpreter log from C++


def _calibration(images):
    """A representative dataset: a function that yields the images one at a time."""
    return lambda: ([image[None]] for image in np.asarray(images, dtype=np.float32))


def quantization_errors(converter, model, images, top=10):
    """Where full-int8 quantization of `model` errs most: its `top` layers, worst first.

    `converter`: a `tf.lite.TFLiteConverter` of `model` set up for int8 (notebook 04).
    TensorFlow's quantization debugger calibrates it on `images` (raw pixels), runs every
    quantized layer on them in 8 bits and in float from the same input, and measures the
    error each layer adds by itself, in steps of its 8-bit output (RMS difference / scale)
    so that layers of different ranges compare. Rounding the output alone costs about
    0.29 steps (1/sqrt(12)); more comes from rounding weights and from values outside
    the calibrated range. Returns layer, operation, step width (`scale`) and error.
    """
    import io
    import warnings

    import pandas as pd
    import tensorflow as tf
    with muted_native_logs(), warnings.catch_warnings():
        # The debugger runs tf.lite.Interpreter, which warns that it is deprecated.
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=_calibration(images))
        debugger.run()
        dump = io.StringIO()
        debugger.layer_statistics_dump(dump)
    stats = pd.read_csv(io.StringIO(dump.getvalue()))
    stats = stats[stats["scale"] > 0]
    names = _layer_names(model)
    table = pd.DataFrame({
        "layer": stats["tensor_name"].map(lambda tensor: _layer_of(tensor, names)),
        "operation": stats["op_name"],
        "scale": stats["scale"].round(4),
        "error (steps)": (stats["mean_squared_error"] ** 0.5 / stats["scale"]).round(2),
    })  # rounded for reading
    return table.sort_values("error (steps)", ascending=False).head(top).reset_index(drop=True)


def _layer_names(model) -> set:
    """The names of `model`'s layers, those of nested models included."""
    return set().union(*({layer.name} | (_layer_names(layer) if hasattr(layer, "layers")
                                         else set()) for layer in model.layers))


def _layer_of(tensor_name, names):
    """The Keras layer of a LiteRT tensor: the innermost part of its path through the nested
    models (`model_1/base_1/block_3_depthwise_1/depthwise;...`) that, without the `_1` the
    export appends, names a layer."""
    parts = tensor_name.split(";")[0].split("/")
    for part in reversed(parts):
        for candidate in (part, re.sub(r"_\d+$", "", part)):
            if candidate in names:
                return candidate
    return "(model output)" if parts[0].startswith("StatefulPartitionedCall") else parts[0]


class LiteRTModel:
    """A `.tflite` file in the LiteRT interpreter: predictions and single-image latency."""

    def __init__(self, path=None, num_threads=2, *, content=None):
        """Load the `.tflite` file `path`, or a model already in memory (`content`, bytes)."""
        from ai_edge_litert.interpreter import Interpreter
        if (path is None) == (content is None):
            raise ValueError("LiteRTModel takes either the path of a .tflite file or the "
                             "model's bytes (content=), not both or neither.")
        model = dict(model_content=content) if path is None else dict(model_path=str(path))
        with muted_native_logs():
            self.interpreter = Interpreter(**model, num_threads=num_threads)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self._batch = None

    @classmethod
    def from_keras(cls, model, num_threads=2) -> LiteRTModel:
        """`model` converted to float32 LiteRT in memory, to run a frozen network fast on a
        CPU (`features.frozen_runner`); seconds for MobileNetV2, no file left behind."""
        with tempfile.TemporaryDirectory() as tmp, muted_native_logs():
            path = Path(tmp) / f"{model.name}.tflite"
            model.export(str(path), format="litert", verbose=False)
            return cls(content=path.read_bytes(), num_threads=num_threads)

    def run(self, images) -> np.ndarray:
        """The model's output for one batch of `images`, exactly as the model takes them."""
        images = np.asarray(images, dtype=np.float32)
        if self._batch != len(images):
            self.interpreter.resize_tensor_input(self.input["index"], images.shape)
            with muted_native_logs():
                self.interpreter.allocate_tensors()
            self._batch = len(images)
        scale, zero_point = self.input["quantization"]
        if self.input["dtype"] != np.float32:  # integer input: the model's own scale
            images = np.clip(np.round(images / scale + zero_point),
                             np.iinfo(self.input["dtype"]).min,
                             np.iinfo(self.input["dtype"]).max)
        self.interpreter.set_tensor(self.input["index"], images.astype(self.input["dtype"]))
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output["index"])
        if self.output["dtype"] != np.float32:
            scale, zero_point = self.output["quantization"]
            out = (out.astype(np.float32) - zero_point) * scale
        return out

    def predict(self, images, batch_size=100) -> np.ndarray:
        """Class probabilities for `images` (raw pixels, as the exported model takes them)."""
        return np.concatenate([self.run(images[i:i + batch_size])
                               for i in range(0, len(images), batch_size)])

    def latency(self, image, calls=200, warmup=20) -> dict:
        """Median and 90th percentile of single-image calls, in milliseconds."""
        return measure_latency(lambda: self.run(image[None].astype(np.float32)),
                               calls=calls, warmup=warmup)


def measure_latency(call, calls=200, warmup=20) -> dict:
    """Time `call()` `calls` times after `warmup` calls: median and p90 in milliseconds."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - start))
    return {"median_ms": statistics.median(times), "p90_ms": float(np.percentile(times, 90))}


def keras_latency(model, image, calls=200, warmup=20) -> dict:
    """The same timing for a Keras model, on TensorFlow's own threads; compiled once with
    `tf.function`, as a served model would be (eager calls time Python's overhead)."""
    import tensorflow as tf
    batch = tf.constant(np.asarray(image, dtype=np.float32)[None])
    forward = tf.function(lambda x: model(x, training=False))
    return measure_latency(lambda: forward(batch).numpy(), calls=calls, warmup=warmup)


def measure_variants(model, files, test, *, keras_probabilities, threads=(1, 2), calls=200):
    """Size, test accuracy and single-image latency of a model's saved variants, side by side.

    `files` maps "keras" to `model`'s `.keras` file, other variants to `.tflite` files;
    `keras_probabilities`: `model`'s predictions for `test.images`, computed once. Returns
    `(table, predictions)`: per variant the size (MB), test accuracy, median and 90th
    percentile latency (ms) on each number of `threads` (Keras: `*_tf_threads`, its own),
    and the predicted class of every test image.
    """
    import pandas as pd

    from .metrics import accuracy
    if len(keras_probabilities) != len(test.images):
        raise ValueError(f"keras_probabilities has {len(keras_probabilities)} rows for "
                         f"{len(test.images)} test images: pass the Keras model's "
                         "predictions for exactly these images.")
    rows, predictions = {}, {}
    for variant, path in files.items():
        path = Path(path)
        if variant == "keras":
            predictions[variant] = np.asarray(keras_probabilities).argmax(axis=1)
            timings = {"tf": keras_latency(model, test.images[0], calls=calls)}
        else:
            predictions[variant] = LiteRTModel(path, num_threads=threads[-1]) \
                .predict(test.images).argmax(axis=1)
            timings = {count: LiteRTModel(path, num_threads=count).latency(test.images[0],
                                                                           calls=calls)
                       for count in threads}
        rows[variant] = {"megabytes": path.stat().st_size / 1e6,
                         "test_accuracy": accuracy(test.labels, predictions[variant]),
                         **{f"{key}_{count}_threads": value for count, timing in timings.items()
                            for key, value in timing.items()}}
    return pd.DataFrame.from_dict(rows, orient="index"), predictions


def shipping_table(table):
    """`measure_variants`' table formatted for people: MB, percent, milliseconds."""
    import pandas as pd
    shown = pd.DataFrame({"file size": table["megabytes"].map("{:.2f} MB".format),
                          "test accuracy": table["test_accuracy"].map("{:.2%}".format)},
                         index=table.index)
    for column in [c for c in table.columns if c.endswith("_threads")]:  # median_ms_2_threads
        statistic, _, count = column.removesuffix("_threads").partition("_ms_")
        who = {"tf": "TensorFlow's threads", "1": "1 thread"}.get(count, f"{count} threads")
        shown[f"{'median' if statistic == 'median' else '90th percentile'}, {who}"] = \
            table[column].map(lambda v: "—" if v != v else f"{v:.1f} ms")
    return shown
