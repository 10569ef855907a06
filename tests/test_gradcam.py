"""Grad-CAM's plumbing: one forward pass gives a layer's maps and the outputs, nested or not."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar_utils.gradcam import activations_and_outputs, last_feature_map, pick_examples


def grad_cam(model, images, layer, classes=None):
    """Notebook 04's Grad-CAM in a few lines: channel weights = mean gradient of the class's
    probability; heatmap = ReLU of the weighted sum of the channels, scaled to [0, 1]."""
    images = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        activations, probabilities = activations_and_outputs(model, images, layer)
        if classes is None:
            classes = tf.argmax(probabilities, axis=1)
        scores = tf.gather(probabilities, tf.cast(classes, tf.int32), axis=1, batch_dims=1)
    gradients = tape.gradient(scores, activations)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    heatmaps = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1)).numpy()
    peaks = heatmaps.max(axis=(1, 2), keepdims=True)
    return (np.divide(heatmaps, peaks, out=np.zeros_like(heatmaps), where=peaks > 0),
            probabilities.numpy())


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
    outputs = rest(inner(inputs, training=False), training=False)
    return keras.Model(inputs, outputs, name="nested"), inner


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
    heatmaps, probabilities = grad_cam(left_half_model, images, "features",
                                       classes=np.ones(20, int))
    assert heatmaps.shape == (20, 16, 16) and probabilities.shape == (20, 2)
    assert heatmaps.min() >= 0 and np.allclose(heatmaps.max(axis=(1, 2)), 1)
    left_share = heatmaps[:, :, :8].sum() / heatmaps.sum()
    assert left_share > 0.9
    assert last_feature_map(left_half_model) == "cropping2d"  # the last 2-D map
    nested, _ = nested_version(left_half_model)
    deep, _ = grad_cam(nested, images, "features", classes=np.ones(20, int))
    np.testing.assert_allclose(deep, heatmaps, atol=1e-5)  # the same through the nesting


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
    heatmaps, _ = grad_cam(model, x, "out_relu")
    assert heatmaps.shape == (2, 1, 1) and np.isfinite(heatmaps).all()


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
