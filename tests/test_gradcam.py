"""Grad-CAM: notebook 04's tape, and the plumbing that gives it a layer's maps and the input
of the last Dense layer in one forward pass, nested or not."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import cifar_utils
from cifar_utils.gradcam import activations_and_outputs, last_feature_map, last_layer, pick_examples

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04_inside_and_shipping.ipynb"


def notebook_function(name):
    """A function exactly as notebook 04 writes it in a cell: the lesson's code, not a copy."""
    cells = ["".join(cell["source"]) for cell in json.loads(NOTEBOOK.read_text())["cells"]
             if cell["cell_type"] == "code"]
    namespace = {"cu": cifar_utils}
    exec(next(cell for cell in cells if f"def {name}(" in cell), namespace)
    return namespace[name]


grad_cam = notebook_function("grad_cam")


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


def nested_version(model):
    """The same network as an outer functional model holding two nested ones, the way a
    transfer model holds MobileNetV2: inputs -> inner -> rest -> outputs."""
    inner = keras.Model(model.input, model.get_layer("features").output, name="inner")
    rest = keras.Model(model.get_layer("features").output, model.output, name="rest")
    inputs = keras.Input(model.input_shape[1:])
    nested = keras.Model(inputs, rest(inner(inputs, training=False), training=False), name="nested")
    copy = keras.models.clone_model(nested)  # slicing `model` called its layers again: new ones,
    copy.set_weights(nested.get_weights())   # each used once, as in a loaded model
    return copy, copy.get_layer("inner")


def test_on_a_plain_model_it_is_the_usual_two_output_model(left_half_model):
    images = blob_images(6, "left", seed=3)
    activations, outputs = activations_and_outputs(left_half_model, images, "features")
    layer = left_half_model.get_layer("features")
    expected = keras.Model(left_half_model.inputs, [layer.output, left_half_model.output])(images)
    assert activations.shape == (6, 16, 16, 8) and outputs.shape == (6, 2)
    np.testing.assert_allclose(activations, expected[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(outputs, expected[1], rtol=1e-6, atol=1e-6)


def test_nested_models_are_followed_where_the_usual_recipe_breaks(left_half_model):
    nested, inner = nested_version(left_half_model)
    with pytest.raises(ValueError):  # the common recipe: Graph disconnected
        keras.Model(nested.inputs, [inner.get_layer("features").output, nested.output])
    images = blob_images(6, "left", seed=2)
    activations, outputs = activations_and_outputs(nested, images, "features")
    flat = activations_and_outputs(left_half_model, images, "features")[0]
    np.testing.assert_allclose(activations, flat, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(outputs, nested(images), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(outputs, left_half_model.predict(images, verbose=0), atol=1e-6)
    assert last_feature_map(nested) == "cropping2d"


def test_the_forward_pass_is_in_inference_mode():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 2))
    maps = keras.layers.Conv2D(3, 1, name="conv")(inputs)
    pooled = keras.layers.Dropout(0.9)(keras.layers.GlobalAveragePooling2D()(maps))
    model = keras.Model(inputs, keras.layers.Dense(2)(pooled))
    x = np.random.default_rng(0).normal(size=(5, 4, 4, 2)).astype("float32")
    _, outputs = activations_and_outputs(model, x, "conv")
    np.testing.assert_allclose(outputs, model(x, training=False), rtol=1e-6, atol=1e-6)


def test_a_missing_or_shared_layer_is_an_error_not_a_guess():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    maps = keras.layers.Conv2D(2, 3, name="features")(inputs)
    plain = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(maps), name="plain")
    images = np.ones((2, 8, 8, 1), "float32")
    with pytest.raises(ValueError, match="no layer named 'conv_9' in plain"):
        activations_and_outputs(plain, images, "conv_9")
    outer_inputs = keras.Input((8, 8, 1))
    outer = keras.Model(outer_inputs, plain(outer_inputs), name="outer")
    with pytest.raises(ValueError, match="no layer named 'conv_9' in outer"):
        activations_and_outputs(outer, images, "conv_9")
    shared = keras.layers.Dense(4, name="shared")
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="inside")],
                             name="inner")
    inputs = keras.Input((4,))
    twice = keras.Model(inputs, inner(shared(shared(inputs))), name="twice")
    with pytest.raises(ValueError, match="cannot follow twice: shared is used more than once"):
        activations_and_outputs(twice, np.ones((1, 4), "float32"), "inside")


def test_the_heatmap_falls_on_the_region_the_prediction_depends_on(left_half_model):
    images = blob_images(20, "left", seed=1)
    heatmaps, probabilities = grad_cam(left_half_model, images, layer="features",
                                       classes=np.ones(20, int))
    assert heatmaps.shape == (20, 16, 16) and probabilities.shape == (20, 2)
    assert heatmaps.min() >= 0 and np.allclose(heatmaps.max(axis=(1, 2)), 1)
    left_share = heatmaps[:, :, :8].sum() / heatmaps.sum()
    assert left_share > 0.9
    assert last_feature_map(left_half_model) == "cropping2d"  # the last 2-D map
    nested, _ = nested_version(left_half_model)
    deep, _ = grad_cam(nested, images, layer="features", classes=np.ones(20, int))
    np.testing.assert_allclose(deep, heatmaps, atol=1e-5)  # the same through the nesting


def saturated(model, factor=1000.0):
    """A copy of `model` whose class scores are `factor` times larger: the same predictions,
    and a softmax that float32 rounds to exactly 1 and 0."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    kernel, bias = copy.layers[-1].get_weights()
    copy.layers[-1].set_weights([factor * kernel, factor * bias])
    return copy


def test_grad_cam_differentiates_the_class_score_not_the_saturated_probability(left_half_model):
    """Grad-CAM's score is the class score before the softmax (Selvaraju et al. 2017). Scaling
    the scores leaves its map as it was; the probability's gradient would be exactly 0 there,
    p(1 - p) with p = 1, and its map empty."""
    images = blob_images(20, "left", seed=4)
    heatmaps, _ = grad_cam(left_half_model, images, layer="features")
    flat, probabilities = grad_cam(saturated(left_half_model), images, layer="features")
    assert (probabilities.max(axis=1) == 1).all()  # saturated: no gradient through the softmax
    assert (flat.max(axis=(1, 2)) == 1).all()  # yet every map has its peak
    np.testing.assert_allclose(flat, heatmaps, atol=1e-4)


def test_before_last_gives_the_input_of_the_last_dense_layer_nested_or_not(left_half_model):
    """With the last Dense layer's kernel and bias, that input gives the class scores: the
    softmax's input, which the notebook differentiates."""
    images = blob_images(6, "left", seed=5)
    assert last_layer(left_half_model) is left_half_model.layers[-1]
    pooled = left_half_model.layers[-2].output  # the input of the Dense layer
    expected = keras.Model(left_half_model.input, pooled)(images)
    nested = nested_version(left_half_model)[0]
    assert last_layer(nested) is nested.get_layer("rest").layers[-1]
    for model in (left_half_model, nested):
        dense = last_layer(model)
        maps, inputs = activations_and_outputs(model, images, "features", before_last=True)
        assert maps.shape == (6, 16, 16, 8)
        np.testing.assert_allclose(inputs, expected, rtol=1e-6, atol=1e-6)
        scores = inputs @ dense.kernel + dense.bias
        np.testing.assert_allclose(keras.ops.softmax(scores), model(images), atol=1e-6)


def test_before_last_follows_a_chain_of_nested_last_models():
    """As in the fine-tuned MobileNetV2: the maps in one nested model, the last Dense layer in
    a head nested in another, which the walk enters without running the Dense layer. The head
    is a Sequential model built with `add`, which calls its layers again at each addition."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    maps = keras.layers.Conv2D(4, 3, padding="same", name="features")(inputs)
    base = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(maps), name="base")
    head = keras.Sequential(name="head")
    for layer in (keras.Input((4,)), keras.layers.Dense(3, name="hidden"),
                  keras.layers.Dense(2, activation="softmax", name="out")):
        head.add(layer)
    assert len(head.get_layer("hidden")._inbound_nodes) > 1  # yet a chain: it can be walked
    top_inputs = keras.Input((4,))
    top = keras.Model(top_inputs, head(top_inputs), name="top")
    outer_inputs = keras.Input((8, 8, 1))
    outer = keras.Model(outer_inputs, top(base(outer_inputs)), name="outer")
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 1)).astype("float32")
    dense = last_layer(outer)
    assert dense is head.get_layer("out")
    maps, inputs = activations_and_outputs(outer, x, "features", before_last=True)
    np.testing.assert_allclose(inputs, head.get_layer("hidden")(base(x)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(keras.ops.softmax(inputs @ dense.kernel + dense.bias), outer(x),
                               atol=1e-6)
    with pytest.raises(ValueError, match="no layer named 'conv_9' in outer"):
        activations_and_outputs(outer, x, "conv_9", before_last=True)


def test_transfer_models_find_mobilenets_last_map():
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False,
                                          weights=None, pooling="avg")
    base.trainable = False
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Dense(10, activation="softmax")(base(inputs, training=False))
    model = keras.Model(inputs, outputs)
    assert last_feature_map(model) == "out_relu"
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    activations, probabilities = activations_and_outputs(model, x, "out_relu")
    assert activations.shape == (2, 1, 1, 1280)
    np.testing.assert_allclose(probabilities, model(x), rtol=1e-5, atol=1e-6)
    heatmaps, probabilities = grad_cam(model, x, layer="out_relu")
    assert heatmaps.shape == (2, 1, 1) and np.isfinite(heatmaps).all()
    np.testing.assert_allclose(probabilities, model(x), rtol=1e-5, atol=1e-6)


def test_a_model_without_feature_maps_has_no_last_map():
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="dense_only")
    with pytest.raises(ValueError, match="dense_only has no layer with a 2-D feature map"):
        last_feature_map(dense)


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
