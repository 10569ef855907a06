"""LiteRT files in the interpreter: they load, predict like the Keras model, and are measured."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar_utils import muted_native_logs
from cifar_utils.data import LabelledImages
from cifar_utils.shipping import (
    LiteRTModel,
    keras_latency,
    measure_latency,
    measure_variants,
    quantization_debugger,
    quantization_errors,
    shipping_table,
)

VARIANTS = ("float32", "float16", "dynamic", "int8")


def on_pixels(net, *preprocessing, size=32, name=None):
    """`net` behind its preprocessing layers: a model that takes raw pixels, as notebook 04
    ships the networks (the preprocessing travels inside the model)."""
    inputs = keras.Input((size, size, 3))
    x = inputs
    for layer in preprocessing:
        x = layer(x)
    return keras.Model(inputs, net(x, training=False), name=name or f"{net.name}_on_pixels")


def calibration(images):
    def batches():
        for image in np.asarray(images, np.float32):
            yield [image[None]]

    return batches


def int8_converter(model, folder, images):
    """A converter set up for full-integer int8, as notebook 04 writes it out."""
    saved_model = str(folder / "saved_model")
    with muted_native_logs():
        model.export(saved_model, format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calibration(images)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter


def export_variants(model, folder, representative_images):
    """Notebook 04's four LiteRT variants, and the Keras file, of `model`: {variant: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"keras": folder / f"{model.name}.keras"}
    model.save(files["keras"])
    files["float32"] = folder / "float32.tflite"
    with muted_native_logs():
        model.export(str(files["float32"]), format="litert", verbose=False)
        saved_model = str(folder / "saved_model")
        model.export(saved_model, format="tf_saved_model", verbose=False)
        for variant in ("float16", "dynamic"):
            converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if variant == "float16":
                converter.target_spec.supported_types = [tf.float16]
            files[variant] = folder / f"{variant}.tflite"
            files[variant].write_bytes(converter.convert())
        files["int8"] = folder / "int8.tflite"
        files["int8"].write_bytes(int8_converter(model, folder, representative_images).convert())
    return files


@pytest.fixture(scope="module")
def pixel_model():
    """A small CNN on raw 32x32 pixels, trained a little: class = brightest channel."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(300, 32, 32, 3)).astype("float32")
    y = x.mean(axis=(1, 2)).argmax(axis=1)
    net = keras.Sequential([keras.Input((32, 32, 3)),
                            keras.layers.Conv2D(64, 3, activation="relu"),
                            keras.layers.Conv2D(64, 3, activation="relu"),
                            keras.layers.GlobalAveragePooling2D(),
                            keras.layers.Dense(3, activation="softmax")], name="tiny")
    model = on_pixels(net, keras.layers.Rescaling(1 / 255))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=15, verbose=0)
    return model, LabelledImages(x.astype(np.uint8), y)


@pytest.fixture(scope="module")
def variants(pixel_model, tmp_path_factory):
    model, data = pixel_model
    return export_variants(model, tmp_path_factory.mktemp("variants"), data.images[:100])


def test_every_variant_loads_and_agrees_with_keras(pixel_model, variants):
    model, data = pixel_model
    expected = model.predict(data.images.astype("float32"), verbose=0)
    for variant in VARIANTS:
        lite = LiteRTModel(variants[variant])
        probabilities = lite.predict(data.images, batch_size=64)  # batches of another size too
        assert probabilities.shape == expected.shape, variant
        agreement = np.mean(probabilities.argmax(1) == expected.argmax(1))
        assert agreement > (0.999 if variant == "float32" else 0.9), variant
    np.testing.assert_allclose(LiteRTModel(variants["float32"]).run(data.images[:8]),
                               expected[:8], rtol=1e-4, atol=1e-5)
    int8 = LiteRTModel(variants["int8"])
    assert int8.input["dtype"] == int8.output["dtype"] == np.int8
    probabilities = int8.predict(data.images[:10])
    assert probabilities.dtype == np.float32  # dequantized with the model's own scale
    assert np.allclose(probabilities.sum(axis=1), 1, atol=0.05)


def test_latency_is_a_median_and_a_90th_percentile():
    ticks = iter(range(1000))
    timing = measure_latency(lambda: next(ticks), calls=50, warmup=5)
    assert set(timing) == {"median_ms", "p90_ms"} and 0 <= timing["median_ms"] <= timing["p90_ms"]
    assert next(ticks) == 55  # warm-up calls, then the timed ones


def test_latency_times_the_interpreter_alone(pixel_model, variants):
    """The image is quantized and set once; the timed calls are `invoke()` only (quantizing
    in NumPy takes about as long as the small CNN's int8 call)."""
    _, data = pixel_model
    lite = LiteRTModel(variants["int8"], num_threads=1)
    calls = {"set_tensor": 0, "invoke": 0}
    for name in calls:
        def counted(*args, _method=getattr(lite.interpreter, name), _name=name):
            calls[_name] += 1
            return _method(*args)
        setattr(lite.interpreter, name, counted)
    timing = lite.latency(data.images[0], calls=7, warmup=3)
    assert calls == {"set_tensor": 1, "invoke": 1 + 3 + 7} and timing["median_ms"] > 0
    np.testing.assert_allclose(lite.run(data.images[:1]), LiteRTModel(variants["int8"]).run(
        data.images[:1]))  # still the image's own output


def test_measure_variants_tabulates_every_file(pixel_model, variants):
    model, data = pixel_model
    probabilities = model.predict(data.images.astype("float32"), verbose=0)
    table, predictions = measure_variants(model, variants, data,
                                          keras_probabilities=probabilities, calls=5)
    assert list(table.index) == ["keras", *VARIANTS] == list(predictions)
    assert {"megabytes", "test_accuracy", "median_ms_1_threads", "p90_ms_2_threads",
            "median_ms_tf_threads"} <= set(table.columns)
    for row, path in variants.items():
        assert table.loc[row, "megabytes"] == path.stat().st_size / 1e6
        assert table.loc[row, "test_accuracy"] == np.mean(predictions[row] == data.labels)
    assert np.isnan(table.loc["keras", "median_ms_1_threads"])  # TensorFlow's threads only
    assert table.loc["keras", "median_ms_tf_threads"] > 0
    assert np.isnan(table.loc["int8", "median_ms_tf_threads"])
    assert (table.loc[list(VARIANTS), "median_ms_2_threads"] > 0).all()
    sizes = table["megabytes"]
    assert sizes["int8"] < 0.5 * sizes["float32"] and sizes["float16"] < 0.75 * sizes["float32"]
    assert np.array_equal(predictions["keras"], probabilities.argmax(axis=1))
    assert np.mean(predictions["int8"] == predictions["keras"]) > 0.9


def test_measure_variants_uses_the_keras_predictions_it_is_given(pixel_model, variants):
    model, data = pixel_model
    given = np.zeros((len(data.labels), 3))
    given[:, 2] = 1  # every image "predicted" class 2, unlike the model itself
    only = {"keras": variants["keras"], "int8": variants["int8"]}
    table, predictions = measure_variants(model, only, data, keras_probabilities=given,
                                          threads=(1,), calls=2)
    assert (predictions["keras"] == 2).all()
    assert table.loc["keras", "test_accuracy"] == np.mean(data.labels == 2)
    assert "median_ms_2_threads" not in table and table.loc["int8", "median_ms_1_threads"] > 0
    with pytest.raises(ValueError, match="10 rows for 300 test images"):
        measure_variants(model, only, data, keras_probabilities=given[:10])


def test_a_litert_model_comes_from_a_file_or_from_its_bytes(pixel_model, variants):
    _, data = pixel_model
    path = variants["float32"]
    from_bytes = LiteRTModel(path.read_bytes())
    np.testing.assert_allclose(from_bytes.run(data.images[:4]), LiteRTModel(path).run(data.images[:4]))
    with pytest.raises(ValueError):  # the interpreter's own error for a file that is not LiteRT
        LiteRTModel(b"not a model")


def test_from_keras_converts_in_memory_and_leaves_no_file(pixel_model, tmp_path, monkeypatch):
    model, data = pixel_model
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where its temporary folder goes
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    lite = LiteRTModel.from_keras(model, num_threads=1)
    assert list(tmp_path.iterdir()) == []
    np.testing.assert_allclose(lite.run(data.images[:6]),
                               model.predict(data.images[:6].astype("float32"), verbose=0),
                               rtol=1e-4, atol=1e-5)


def test_keras_latency_times_single_images(pixel_model):
    model, data = pixel_model
    timing = keras_latency(model, data.images[0], calls=10, warmup=2)
    assert set(timing) == {"median_ms", "p90_ms"} and 0 < timing["median_ms"] <= timing["p90_ms"]


def test_shipping_table_is_formatted_for_people():
    import pandas as pd

    table = pd.DataFrame({"megabytes": [1.234, 0.31], "test_accuracy": [0.8567, 0.85],
                          "median_ms_tf_threads": [12.34, np.nan],
                          "median_ms_1_threads": [np.nan, 0.084],
                          "p90_ms_1_threads": [np.nan, 0.125]}, index=["keras", "int8"])
    shown = shipping_table(table)
    assert list(shown.columns) == ["file size", "test accuracy", "median, TensorFlow's threads",
                                   "median, 1 thread", "90th percentile, 1 thread"]
    assert shown.loc["keras"].tolist() == ["1.23 MB", "85.67%", "12.34 ms", "—", "—"]
    assert shown.loc["int8"].tolist() == ["0.31 MB", "85.00%", "—", "0.08 ms", "0.12 ms"]
    mixed = shipping_table(table.rename(index={"keras": "dynamic", "int8": "int8_selective"}))
    assert list(mixed.index) == ["dynamic range", "mixed int8/float"]  # not "full int8"
    assert mixed.loc["mixed int8/float"].tolist() == shown.loc["int8"].tolist()


def test_quantization_errors_point_at_the_layer_whose_weights_round_badly(tmp_path):
    """conv_b weighs a near-zero input by 1000 and the input that matters by 1: in 8 bits
    (one scale per filter) the 1 rounds to 0, so conv_b's output is lost, many steps off.
    conv_a's weights round well: it errs by about the rounding of its output."""
    x = np.random.default_rng(0).uniform(0, 255, size=(20, 8, 8, 3)).astype("float32")
    conv_a = keras.layers.Conv2D(2, 1, name="conv_a")
    conv_b = keras.layers.Conv2D(1, 1, name="conv_b")
    net = keras.Sequential([keras.Input((8, 8, 3)), conv_a, conv_b,
                            keras.layers.GlobalAveragePooling2D(name="pool"),
                            keras.layers.Dense(2, activation="softmax", name="out")], name="net")
    conv_a.set_weights([np.array([[0.0, 1.0], [0, 0], [0, 0]]).reshape(1, 1, 3, 2),
                        np.zeros(2)])  # channel 0: zero; channel 1: the red channel
    conv_b.set_weights([np.array([1000.0, 1.0]).reshape(1, 1, 2, 1), np.zeros(1)])
    model = on_pixels(net, keras.layers.Rescaling(1 / 255), size=8)  # conv_a, conv_b nested
    converter = int8_converter(model, tmp_path, x)

    table = quantization_errors(converter, model, x, top=3)

    assert list(table.columns) == ["layer", "operation", "scale", "error (steps)", "tensor"]
    assert len(table) == 3
    assert table["error (steps)"].is_monotonic_decreasing
    assert table.loc[0, "layer"] == "conv_b" and table.loc[0, "operation"] == "CONV_2D"
    assert table.loc[0, "error (steps)"] > 10
    errors = quantization_errors(converter, model, x, top=None).set_index("layer")["error (steps)"]
    assert errors["conv_a"] < 0.5  # rounding alone: about 0.29 steps

    # Selective quantization: with conv_b kept in float, the lost input comes back.
    def predictions(content):
        return LiteRTModel(content, num_threads=1).predict(x)

    float_model = model.predict(x, verbose=0)
    with quantization_debugger(converter, x) as debugger:
        int8 = predictions(debugger.get_nondebug_quantized_model())
    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=[table.loc[0, "tensor"]], fully_quantize=True)
    with quantization_debugger(converter, x, options) as debugger:
        selective = predictions(debugger.get_nondebug_quantized_model())
    assert np.abs(selective - float_model).max() < np.abs(int8 - float_model).max() / 3
