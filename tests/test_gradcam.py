"""Grad-CAM finds the region a prediction rests on, also inside nested models."""

import keras
import numpy as np
import pytest

from cifar_utils.gradcam import grad_cam, last_feature_map, pick_examples, upsample
from cifar_utils.models import build_transfer_model, chain


def blob_images(n, side, seed=0):
    """16x16 noise images with one bright 4x4 blob in the left or the right half."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.2, size=(n, 16, 16, 1)).astype("float32")
    for image, half in zip(x, np.atleast_1d(side) if np.ndim(side) else [side] * n, strict=True):
        row, col = rng.integers(0, 12), rng.integers(0, 4) + (8 if half == "right" else 0)
        image[row:row + 4, col:col + 4] = 1.0
    return x


@pytest.fixture(scope="module")
def left_half_model():
    """Sees only the left half of the image: class 1 when a blob is there."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 1))
    maps = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="features")(inputs)
    left = keras.layers.Cropping2D(((0, 0), (0, 8)))(maps)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalMaxPooling2D()(left))
    model = keras.Model(inputs, outputs)
    sides = np.array(["left", "right"] * 100)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(blob_images(200, sides), (sides == "left").astype(int), epochs=30, verbose=0)
    return model


def test_the_heatmap_falls_on_the_region_the_prediction_depends_on(left_half_model):
    images = blob_images(20, "left", seed=1)
    heatmaps, probabilities = grad_cam(left_half_model, images, classes=np.ones(20, int),
                                       layer="features")
    assert heatmaps.shape == (20, 16, 16) and probabilities.shape == (20, 2)
    assert heatmaps.min() >= 0 and np.allclose(heatmaps.max(axis=(1, 2)), 1)
    left_share = heatmaps[:, :, :8].sum() / heatmaps.sum()
    assert left_share > 0.9
    assert last_feature_map(left_half_model) == "cropping2d"  # the last 2-D map


def test_nested_models_are_followed_where_the_usual_recipe_breaks(left_half_model):
    inner = keras.Model(left_half_model.input, left_half_model.get_layer("features").output,
                        name="inner")
    rest = keras.Model(left_half_model.get_layer("features").output, left_half_model.output,
                       name="rest")
    nested = chain(inner, rest, name="nested")
    with pytest.raises(ValueError):  # the common recipe: Graph disconnected
        keras.Model(nested.inputs, [inner.get_layer("features").output, nested.output])
    images = blob_images(6, "left", seed=2)
    flat, _ = grad_cam(left_half_model, images, layer="features")
    deep, probabilities = grad_cam(nested, images, layer="features")
    assert np.allclose(deep, flat, atol=1e-5)
    assert np.allclose(probabilities, left_half_model.predict(images, verbose=0), atol=1e-6)
    assert last_feature_map(nested) == "cropping2d"


def test_transfer_models_find_mobilenets_last_map():
    from cifar_utils.models import build_linear_head, build_mobilenet_v2

    model = build_transfer_model(build_mobilenet_v2(32, weights=None), build_linear_head())
    assert last_feature_map(model) == "out_relu"
    heatmaps, _ = grad_cam(model, np.zeros((2, 32, 32, 3), "float32"))
    assert heatmaps.shape == (2, 1, 1) and np.isfinite(heatmaps).all()


def test_upsample_to_the_image_size():
    big = upsample(np.eye(4)[None], 32)
    assert big.shape == (1, 32, 32) and big[0, 0, 0] > 0.5 > big[0, 0, 31]


def test_examples_are_the_same_images_for_every_model():
    labels = np.array([0, 1, 2, 0, 1])
    first = np.eye(3)[[0, 1, 2, 1, 1]]        # right on 0, 1, 2, 4
    last = np.eye(3)[[0, 2, 2, 1, 0]] * 0.5 + 0.1  # right on 0, 2; wrong on 1, 3, 4
    last[3, 1], last[4, 0] = 0.9, 0.5           # mistakes by confidence: 3, 1, 4
    probabilities = {"cnn": first, "mobilenet": last}
    assert pick_examples(labels, probabilities, kind="correct", n=5).tolist() == [0, 2]
    assert pick_examples(labels, probabilities, kind="mistakes", n=2).tolist() == [3, 1]
    with pytest.raises(ValueError, match="'correct' or 'mistakes'"):
        pick_examples(labels, probabilities, kind="best")
