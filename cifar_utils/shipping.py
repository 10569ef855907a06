"""Measuring shipped models: LiteRT (`.tflite`) files in the interpreter (`LiteRTModel`), their
accuracy, size and latency side by side, and the layers where int8 errs. Notebook 04 writes out
the conversions; nothing here re-implements quantization: int8 scales are read from the model."""

from __future__ import annotations

import contextlib
import io
import re
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from . import muted_native_logs  # the converter and the interpreter log from C++


def converter(saved_model, variant, calibration=None):
    """Notebook 04's converter, written out and explained there, reused by notebook 05: a
    `tf.lite.TFLiteConverter` of the exported `saved_model`, set up for one variant."""
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]  # quantize what the settings allow
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        converter.representative_dataset = lambda: ([image[None]] for image in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter  # "dynamic": Optimize.DEFAULT alone


def quantization_errors(converter, model, images, top=10):
    """Where full-int8 quantization of `model` errs most: its `top` layers, worst first, by the
    error each adds by itself (TensorFlow's quantization debugger, calibrated on `images`), in
    steps of its 8-bit output (RMS difference / `scale`; rounding alone costs about 0.29 steps);
    `tensor` is the name `QuantizationDebugOptions(denylisted_nodes=)` takes."""
    import pandas as pd

    from .models import flat_layers
    with quantization_debugger(converter, images) as debugger:
        debugger.run()
        dump = io.StringIO()
        debugger.layer_statistics_dump(dump)
    stats = pd.read_csv(io.StringIO(dump.getvalue()))
    stats = stats[stats["scale"] > 0]
    names = {layer.name for layer in flat_layers(model)}  # those of nested models too
    table = pd.DataFrame({
        "layer": stats["tensor_name"].map(lambda tensor: _layer_of(tensor, names)),
        "operation": stats["op_name"],
        "scale": stats["scale"].round(4),
        "error (steps)": (stats["mean_squared_error"] ** 0.5 / stats["scale"]).round(2),
        "tensor": stats["tensor_name"]})  # rounded for reading
    return table.sort_values("error (steps)", ascending=False).head(top).reset_index(drop=True)


@contextlib.contextmanager
def quantization_debugger(converter, images, options=None):
    """TensorFlow's quantization debugger of `converter`, calibrated on `images`, quiet: no
    C++ logs, no warning that it runs the deprecated `tf.lite.Interpreter`."""
    import tensorflow as tf
    with muted_native_logs(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        yield tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_options=options,  # images one at a time:
            debug_dataset=lambda: ([image[None]] for image in np.asarray(images, np.float32)))


def _layer_of(tensor_name, names):
    """The Keras layer of a LiteRT tensor `model_1/base_1/block_3_depthwise_1/depthwise;...`:
    the innermost part of the path that names a layer (without the export's `_1`)."""
    parts = tensor_name.split(";")[0].split("/")
    for part in reversed(parts):
        for candidate in (part, re.sub(r"_\d+$", "", part)):
            if candidate in names:
                return candidate
    return "(model output)" if parts[0].startswith("StatefulPartitionedCall") else parts[0]


class LiteRTModel:
    """A `.tflite` file in the LiteRT interpreter: predictions and single-image latency."""

    def __init__(self, model, num_threads=2):
        """Load `model`: the path of a `.tflite` file, or the model itself (bytes)."""
        from ai_edge_litert.interpreter import Interpreter
        model = dict(model_content=model) if isinstance(model, bytes) else dict(model_path=str(model))
        with muted_native_logs():
            self.interpreter = Interpreter(**model, num_threads=num_threads)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self._batch = None

    @classmethod
    def from_keras(cls, model, num_threads=2) -> LiteRTModel:
        """`model` as float32 LiteRT in memory, no file left: a frozen network fast on a CPU."""
        with tempfile.TemporaryDirectory() as tmp, muted_native_logs():
            path = Path(tmp) / f"{model.name}.tflite"
            model.export(str(path), format="litert", verbose=False)
            return cls(path.read_bytes(), num_threads=num_threads)

    def run(self, images) -> np.ndarray:
        """The model's output for one batch of `images`, exactly as the model takes them."""
        images = np.asarray(images, dtype=np.float32)
        if self._batch != len(images):
            self.interpreter.resize_tensor_input(self.input["index"], images.shape)
            with muted_native_logs():
                self.interpreter.allocate_tensors()
            self._batch = len(images)
        (scale, zero_point), kind = self.input["quantization"], self.input["dtype"]
        if kind != np.float32:  # integer input: the model's own scale and zero point
            info = np.iinfo(kind)
            images = np.clip(np.round(images / scale + zero_point), info.min, info.max)
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
        """Median and 90th percentile of single-image calls, in milliseconds: the interpreter's
        `invoke()` alone, the image quantized (int8) and set once before the timing."""
        self.run(np.asarray(image)[None])
        return measure_latency(self.interpreter.invoke, calls=calls, warmup=warmup)


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
    """Size (MB), test accuracy and single-image latency (ms, median and 90th percentile, on each
    number of `threads`; Keras: `*_tf_threads`) of a model's saved `files` ("keras" -> `.keras`,
    else `.tflite`), side by side; and each variant's predicted class of each test image."""
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
            lite = {count: LiteRTModel(path, num_threads=count) for count in threads}
            predictions[variant] = lite[threads[-1]].predict(test.images).argmax(axis=1)
            timings = {count: lite[count].latency(test.images[0], calls=calls) for count in threads}
        rows[variant] = {"megabytes": path.stat().st_size / 1e6,
                         "test_accuracy": accuracy(test.labels, predictions[variant]),
                         **{f"{key}_{count}_threads": value for count, timing in timings.items()
                            for key, value in timing.items()}}
    return pd.DataFrame.from_dict(rows, orient="index"), predictions


def shipping_table(table):
    """`measure_variants`' table formatted for people: MB, percent, milliseconds to 0.01 ms
    (the small CNN's variants differ by hundredths), variants named as notebook 04 does."""
    import pandas as pd
    shown = pd.DataFrame({"file size": table["megabytes"].map("{:.2f} MB".format),
                          "test accuracy": table["test_accuracy"].map("{:.2%}".format)},
                         index=table.index)
    for column in [c for c in table.columns if c.endswith("_threads")]:  # median_ms_2_threads
        statistic, _, count = column.removesuffix("_threads").partition("_ms_")
        who = {"tf": "TensorFlow's threads", "1": "1 thread"}.get(count, f"{count} threads")
        shown[f"{'median' if statistic == 'median' else '90th percentile'}, {who}"] = \
            table[column].map(lambda v: "—" if v != v else f"{v:.2f} ms")
    return shown.rename(index={"dynamic": "dynamic range", "int8_selective": "mixed int8/float"})
