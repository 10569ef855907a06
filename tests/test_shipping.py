"""LiteRT export: four variants that load, predict like the Keras model, and shrink."""

import keras
import numpy as np
import pytest

from cifar_utils.data import Split
from cifar_utils.shipping import (
    VARIANTS,
    LiteRTModel,
    compare_variants,
    export_litert,
    keras_latency,
    measure_latency,
    quantization_errors,
    shipping_table,
    with_preprocessing,
)


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
    model = with_preprocessing(net, keras.layers.Rescaling(1 / 255))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=15, verbose=0)
    return model, Split(x.astype(np.uint8), y)


def test_every_variant_loads_and_agrees_with_keras(pixel_model, tmp_path):
    model, data = pixel_model
    paths = export_litert(model, tmp_path, "tiny", representative_images=data.images[:100])
    assert list(paths) == list(VARIANTS) and all(p.is_file() for p in paths.values())
    expected = model.predict(data.images.astype("float32"), verbose=0)
    for variant, path in paths.items():
        lite = LiteRTModel(path)
        probabilities = lite.predict(data.images)
        assert probabilities.shape == expected.shape, variant
        agreement = np.mean(probabilities.argmax(1) == expected.argmax(1))
        assert agreement > (0.999 if variant == "float32" else 0.9), variant
    assert LiteRTModel(paths["int8"]).input["dtype"] == np.int8
    sizes = {variant: LiteRTModel(path).megabytes for variant, path in paths.items()}
    assert sizes["int8"] < 0.5 * sizes["float32"] and sizes["float16"] < 0.75 * sizes["float32"]


def test_latency_is_a_median_and_a_90th_percentile():
    ticks = iter(range(1000))
    timing = measure_latency(lambda: next(ticks), calls=50, warmup=5)
    assert set(timing) == {"median_ms", "p90_ms"} and 0 <= timing["median_ms"] <= timing["p90_ms"]


def test_compare_variants_tabulates_keras_and_every_variant(pixel_model, tmp_path):
    model, data = pixel_model
    table, predictions = compare_variants(model, "tiny", tmp_path, data,
                                          representative_images=data.images[:50], calls=20)
    assert list(table.index) == ["keras", *VARIANTS]
    assert {"megabytes", "test_accuracy", "median_ms_1_threads", "p90_ms_2_threads"} \
        <= set(table.columns)
    assert np.isnan(table.loc["keras", "median_ms_1_threads"])  # TensorFlow's threads only
    assert table.loc["keras", "median_ms_tf_threads"] > 0
    assert np.isnan(table.loc["int8", "median_ms_tf_threads"])
    for row, predicted in predictions.items():
        assert table.loc[row, "test_accuracy"] == np.mean(predicted == data.labels)


def test_compare_variants_uses_the_keras_predictions_it_is_given(pixel_model, tmp_path):
    model, data = pixel_model
    given = np.zeros((len(data.labels), 3))
    given[:, 2] = 1  # every image "predicted" class 2, unlike the model itself
    table, predictions = compare_variants(model, "tiny", tmp_path, data, calls=2,
                                          representative_images=data.images[:20],
                                          keras_probabilities=given)
    assert (predictions["keras"] == 2).all()
    assert table.loc["keras", "test_accuracy"] == np.mean(data.labels == 2)
    with pytest.raises(ValueError, match="rows for 300 test images"):
        compare_variants(model, "tiny", tmp_path, data, representative_images=None,
                         keras_probabilities=given[:10])


def test_a_litert_model_comes_from_a_file_or_from_bytes_not_both(pixel_model, tmp_path):
    model, data = pixel_model
    path = export_litert(model, tmp_path, "tiny", representative_images=None,
                         variants=("float32",))["float32"]
    from_bytes = LiteRTModel(content=path.read_bytes())
    np.testing.assert_allclose(from_bytes.run(data.images[:4]), LiteRTModel(path).run(data.images[:4]))
    for wrong in (dict(), dict(path=path, content=path.read_bytes())):
        with pytest.raises(ValueError, match="either the path of a .tflite file"):
            LiteRTModel(**wrong)


def test_keras_latency_times_single_images(pixel_model):
    model, data = pixel_model
    timing = keras_latency(model, data.images[0], calls=10, warmup=2)
    assert set(timing) == {"median_ms", "p90_ms"} and 0 < timing["median_ms"] <= timing["p90_ms"]


def test_shipping_table_is_formatted_for_people():
    import pandas as pd

    table = pd.DataFrame({"megabytes": [1.234, 0.31], "test_accuracy": [0.8567, 0.85],
                          "median_ms_tf_threads": [12.34, np.nan],
                          "median_ms_1_threads": [np.nan, 2.0],
                          "p90_ms_1_threads": [np.nan, 2.5]}, index=["keras", "int8"])
    shown = shipping_table(table)
    assert list(shown.columns) == ["file size", "test accuracy", "median, TensorFlow's threads",
                                   "median, 1 thread", "90th percentile, 1 thread"]
    assert shown.loc["keras"].tolist() == ["1.23 MB", "85.67%", "12.3 ms", "—", "—"]
    assert shown.loc["int8"].tolist() == ["0.31 MB", "85.00%", "—", "2.0 ms", "2.5 ms"]


def test_quantization_errors_point_at_the_layer_whose_weights_round_badly():
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
    model = with_preprocessing(net, keras.layers.Rescaling(1 / 255), image_size=8)

    table = quantization_errors(model, x, top=3)

    assert list(table.columns) == ["layer", "operation", "scale", "error (steps)"]
    assert len(table) == 3
    assert table["error (steps)"].is_monotonic_decreasing
    assert table.loc[0, "layer"] == "conv_b" and table.loc[0, "operation"] == "CONV_2D"
    assert table.loc[0, "error (steps)"] > 10
    errors = quantization_errors(model, x, top=None).set_index("layer")["error (steps)"]
    assert errors["conv_a"] < 0.5  # rounding alone: about 0.29 steps
