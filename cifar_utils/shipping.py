"""Shipping a trained model: LiteRT (`.tflite`) files, their accuracy, size and latency.

A phone or a microcontroller runs a LiteRT flatbuffer, not a Keras model. Four variants
of the same network, from large and exact to small and approximate:

* `float32`: Keras' own `model.export(path, format="litert")`;
* `float16`: weights stored as 16-bit floats (half the size), computed in float32;
* `dynamic`: weights stored as 8-bit integers, activations quantized on the fly;
* `int8`: weights and activations in 8 bits, with scales calibrated on a few hundred
  training images (the representative dataset); input and output are int8 too, as an
  integer-only accelerator needs them.

The quantized variants go through `tf.lite.TFLiteConverter` from an exported SavedModel,
and every variant runs in the LiteRT interpreter (`ai_edge_litert`), which is also
what measures latency. Nothing here re-implements quantization: the int8 input and
output scales are read from the model.
"""

from __future__ import annotations

import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

VARIANTS = ("float32", "float16", "dynamic", "int8")


def _quiet():
    """The TensorFlow converter and the interpreter log from C++ to stderr: mute it."""
    from . import _native_stderr_muted

    return _native_stderr_muted()


def export_litert(model, folder, name, *, representative_images, variants=VARIANTS) -> dict:
    """Write `<folder>/<name>_<variant>.tflite` for each variant; return {variant: path}.

    `model` should take what a device has: raw pixels in [0, 255] (see
    `with_preprocessing`). `representative_images` (a few hundred training images,
    uint8 or float) calibrate the int8 variant's scales; only the int8 variant needs them.
    """
    import tensorflow as tf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        saved_model = str(Path(tmp) / "saved_model")
        if set(variants) - {"float32"}:  # the converter's input, for the quantized variants
            model.export(saved_model, format="tf_saved_model", verbose=False)
        for variant in variants:
            path = folder / f"{name}_{variant}.tflite"
            if variant == "float32":
                model.export(str(path), format="litert", verbose=False)
            else:
                converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                if variant == "float16":
                    converter.target_spec.supported_types = [tf.float16]
                elif variant == "int8":
                    _full_integer(converter, representative_images)
                elif variant != "dynamic":
                    raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")
                path.write_bytes(converter.convert())
            paths[variant] = path
    return paths


def _full_integer(converter, representative_images):
    """Set `converter` up for the int8 variant: integer ops, input and output."""
    import tensorflow as tf

    converter.representative_dataset = _calibration(representative_images)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8


def _calibration(images):
    def batches():
        for image in np.asarray(images, dtype=np.float32):
            yield [image[None]]

    return batches


def quantization_errors(model, images, top=10):
    """Where full-int8 quantization of `model` errs most: its `top` layers, worst first.

    TensorFlow's quantization debugger calibrates the int8 model on `images` (raw pixels,
    as `model` takes them), then runs every quantized layer on those images twice, in
    8 bits and in float, from the same input, and reports how far the outputs differ:
    the error each layer adds by itself, not what it inherits. The error is in
    quantization steps (the root-mean-square difference divided by the width of one
    step of the layer's 8-bit output), so layers of different ranges compare. Rounding
    the output alone costs about 0.29 steps (1/sqrt(12)); more comes from rounding the
    layer's weights, and from values outside the range calibrated. Returns the layer's
    name, its operation, the step width (`scale`) and the error.
    """
    import io
    import warnings

    import pandas as pd
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp, _quiet(), warnings.catch_warnings():
        # The debugger runs tf.lite.Interpreter, which warns that it is deprecated.
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        saved_model = str(Path(tmp) / "saved_model")
        model.export(saved_model, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        _full_integer(converter, images)
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
    names = set()
    for layer in model.layers:
        names.add(layer.name)
        if hasattr(layer, "layers"):
            names |= _layer_names(layer)
    return names


def _layer_of(tensor_name, names):
    """The Keras layer a LiteRT tensor belongs to, from the tensor's name.

    LiteRT names a tensor by its path through the nested models, e.g.
    `model_1/backbone_1/block_3_depthwise_1/depthwise;...`: the innermost part that is a
    layer's name (with the `_1` the export appends) is the layer.
    """
    parts = tensor_name.split(";")[0].split("/")
    for part in reversed(parts):
        for candidate in (part, re.sub(r"_\d+$", "", part)):
            if candidate in names:
                return candidate
    return "(model output)" if parts[0].startswith("StatefulPartitionedCall") else parts[0]


def with_preprocessing(model, *layers, image_size=32, name=None):
    """`model` preceded by preprocessing `layers`: a model that takes raw 32x32 pixels.

    E.g. `with_preprocessing(cnn, normalization_layer)` or, for a network trained at
    160x160 on [-1, 1] inputs, `with_preprocessing(net, keras.layers.Resizing(160, 160),
    keras.layers.Rescaling(1 / 127.5, offset=-1))`. What the data pipeline did on the
    way in then ships inside the model, where a device needs it.
    """
    import keras

    from .training import distribution_strategy

    with distribution_strategy().scope():
        inputs = keras.Input((image_size, image_size, 3))
        x = inputs
        for layer in layers:
            x = layer(x)
        outputs = model(x, training=False)
        return keras.Model(inputs, outputs, name=name or f"{model.name}_on_pixels")


class LiteRTModel:
    """A `.tflite` file in the LiteRT interpreter: predictions and single-image latency."""

    def __init__(self, path=None, num_threads=2, *, content=None):
        """Load the `.tflite` file `path`, or a model already in memory (`content`, bytes)."""
        from ai_edge_litert.interpreter import Interpreter

        if (path is None) == (content is None):
            raise ValueError("LiteRTModel takes either the path of a .tflite file or the "
                             "model's bytes (content=), not both or neither.")
        self.path = None if path is None else Path(path)
        model = dict(model_content=content) if path is None else dict(model_path=str(path))
        with _quiet():
            self.interpreter = Interpreter(**model, num_threads=num_threads)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self._batch = None

    @classmethod
    def from_keras(cls, model, num_threads=2) -> LiteRTModel:
        """`model` converted to float32 LiteRT and held in memory: no file is left behind.

        For running a frozen network fast on a CPU (see `features.frozen_runner`); the
        conversion takes some seconds for MobileNetV2.
        """
        with tempfile.TemporaryDirectory() as tmp:
            path = export_litert(model, tmp, model.name, representative_images=None,
                                 variants=("float32",))["float32"]
            return cls(content=path.read_bytes(), num_threads=num_threads)

    @property
    def megabytes(self) -> float:
        """File size in MB (10^6 bytes)."""
        return self.path.stat().st_size / 1e6

    def run(self, images) -> np.ndarray:
        """The model's output for one batch of `images`, exactly as the model takes them."""
        return self._run(np.asarray(images, dtype=np.float32))

    def _run(self, images):
        if self._batch != len(images):
            self.interpreter.resize_tensor_input(self.input["index"], images.shape)
            with _quiet():
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
        images = np.asarray(images, dtype=np.float32)
        return np.concatenate([self._run(images[i:i + batch_size])
                               for i in range(0, len(images), batch_size)])

    def latency(self, image, calls=200, warmup=20) -> dict:
        """Median and 90th percentile of single-image calls, in milliseconds."""
        return measure_latency(lambda: self._run(image[None].astype(np.float32)),
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
    return {"median_ms": statistics.median(times),
            "p90_ms": float(np.percentile(times, 90))}


def keras_latency(model, image, calls=200, warmup=20) -> dict:
    """The same single-image timing for the Keras model itself (TensorFlow's own threads).

    The call is compiled once with `tf.function`, as a served model would be: an eager
    call would mostly time Python's layer-by-layer overhead.
    """
    import tensorflow as tf

    batch = tf.constant(np.asarray(image, dtype=np.float32)[None])
    forward = tf.function(lambda x: model(x, training=False))
    return measure_latency(lambda: forward(batch).numpy(), calls=calls, warmup=warmup)


def compare_variants(model, name, folder, test, *, representative_images, threads=(1, 2),
                     calls=200, keras_probabilities=None):
    """Export `model` (raw pixels in) to every LiteRT variant and measure each one.

    Returns `(table, predictions)`: one row per variant plus the Keras model for
    reference, with the file size (MB), the accuracy on `test` (a `Split`), and the
    median and 90th-percentile latency of single-image calls (ms) with each number of
    `threads`; and the predicted classes of every test image, per row. The Keras row's
    size is its `.keras` file, and its latency (columns `*_tf_threads`) uses
    TensorFlow's own threads. `keras_probabilities`: the Keras model's predictions for
    `test.images`, if already computed (for MobileNetV2 on a CPU they take minutes).
    """
    import pandas as pd

    from .metrics import accuracy

    if keras_probabilities is None:
        keras_probabilities = model.predict(np.asarray(test.images, np.float32),
                                            batch_size=100, verbose=0)
    elif len(keras_probabilities) != len(test.images):
        raise ValueError(f"keras_probabilities has {len(keras_probabilities)} rows for "
                         f"{len(test.images)} test images: pass the Keras model's "
                         "predictions for exactly these images, or None to compute them.")
    rows, predictions = {}, {}
    keras_file = Path(folder) / f"{name}.keras"
    Path(folder).mkdir(parents=True, exist_ok=True)
    model.save(keras_file)
    predictions["keras"] = np.asarray(keras_probabilities).argmax(axis=1)
    rows["keras"] = {"megabytes": keras_file.stat().st_size / 1e6,
                     "test_accuracy": accuracy(test.labels, predictions["keras"]),
                     **{f"{key}_tf_threads": value for key, value in  # TensorFlow's choice
                        keras_latency(model, test.images[0], calls=calls).items()}}
    paths = export_litert(model, folder, name, representative_images=representative_images)
    for variant, path in paths.items():
        lite = LiteRTModel(path, num_threads=threads[-1])
        predictions[variant] = lite.predict(test.images).argmax(axis=1)
        row = {"megabytes": lite.megabytes,
               "test_accuracy": accuracy(test.labels, predictions[variant])}
        for count in threads:
            timing = LiteRTModel(path, num_threads=count).latency(test.images[0], calls=calls)
            row.update({f"{key}_{count}_threads": value for key, value in timing.items()})
        rows[variant] = row
    return pd.DataFrame.from_dict(rows, orient="index"), predictions


def shipping_table(table):
    """`compare_variants`' table formatted for people: MB, percent, milliseconds."""
    import pandas as pd

    shown = pd.DataFrame({"file size": table["megabytes"].map("{:.2f} MB".format),
                          "test accuracy": table["test_accuracy"].map("{:.2%}".format)},
                         index=table.index)
    for column in [c for c in table.columns if c.endswith("_threads")]:
        statistic, _, threads = column.partition("_ms_")
        count = threads.replace("_threads", "")
        who = "TensorFlow's threads" if count == "tf" else \
            f"{count} thread{'s' if count != '1' else ''}"
        title = f"{'median' if statistic == 'median' else '90th percentile'}, {who}"
        shown[title] = table[column].map(lambda v: "—" if v != v else f"{v:.1f} ms")
    return shown
