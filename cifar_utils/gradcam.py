"""Grad-CAM: which regions of an image a convolutional network's prediction rests on.

Grad-CAM (Selvaraju et al., 2017) weighs each channel of a convolutional layer's output
by how much the class's predicted probability grows with it (the spatial mean of the gradient), sums
the weighted channels and keeps the positive part: a coarse map, at that layer's
resolution, of where the evidence for the class lies.

The usual Keras recipe builds `Model(model.inputs, [layer.output, model.output])`, which
fails ("Graph disconnected") when the layer sits inside a nested model, as MobileNetV2
does inside a transfer model. `grad_cam` instead walks down the nesting: it runs the
outer models' layers in turn and, in the nested model that holds the layer, builds
the two-output model from that model's own graph.
"""

from __future__ import annotations

import keras
import numpy as np


def last_feature_map(model) -> str:
    """Name of the last layer, nested models included, whose output is a 2-D feature map."""
    found = None
    for layer in _flat_layers(model):
        if not isinstance(layer, keras.layers.InputLayer) and len(layer.output.shape) == 4:
            found = layer.name
    if found is None:
        raise ValueError(f"{model.name} has no layer with a 2-D feature map output")
    return found


def _flat_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _flat_layers(layer)
        else:
            yield layer


def _holds(model, name) -> bool:
    return any(layer.name == name for layer in _flat_layers(model))


def _forward(model, x, name):
    """(activations of layer `name`, outputs of `model`) for inputs `x`, in inference mode."""
    if any(layer.name == name for layer in model.layers):
        both = keras.Model(model.inputs, [model.get_layer(name).output, model.outputs[0]])
        return both(x, training=False)
    activations = None
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if len(layer._inbound_nodes) != 1:
            raise ValueError(f"cannot follow {model.name}: {layer.name} is used more than once")
        if isinstance(layer, keras.Model) and _holds(layer, name):
            activations, x = _forward(layer, x, name)
        else:
            x = layer(x, training=False)
    if activations is None:
        raise ValueError(f"no layer named {name!r} in {model.name}")
    return activations, x


def grad_cam(model, images, *, classes=None, layer=None):
    """Grad-CAM heatmaps of `model` for a batch of preprocessed `images`.

    Args:
        model: a Keras classifier whose top-level layers run one after another (a
            plain functional CNN, or models chained with `build_transfer_model` or
            `chain`); nested models are followed.
        images: inputs as the model takes them (float; raw pixels for a model built with
            `shipping.with_preprocessing`, preprocessed images otherwise).
        classes: one class per image to explain; None explains the predicted class.
        layer: name of the convolutional layer to use; None takes the last one
            (`last_feature_map`), whose maps are the most class-specific and the coarsest.

    Returns `(heatmaps, probabilities)`: heatmaps of shape (N, h, w) at the layer's
    resolution, each scaled to [0, 1] (all zeros where no region speaks for the
    class), and the model's class probabilities.
    """
    import tensorflow as tf

    layer = layer or last_feature_map(model)
    images = tf.convert_to_tensor(images, dtype=tf.float32)
    with tf.GradientTape() as tape:
        activations, probabilities = _forward(model, images, layer)
        if classes is None:
            classes = tf.argmax(probabilities, axis=1)
        scores = tf.gather(probabilities, tf.cast(classes, tf.int32), axis=1, batch_dims=1)
    gradients = tape.gradient(scores, activations)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)  # one per channel
    heatmaps = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1)).numpy()
    peaks = heatmaps.max(axis=(1, 2), keepdims=True)
    heatmaps = np.divide(heatmaps, peaks, out=np.zeros_like(heatmaps), where=peaks > 0)
    return heatmaps, probabilities.numpy()


def upsample(heatmaps, size):
    """Heatmaps resized (bilinear) to `size` x `size` pixels, for an overlay on the images."""
    import tensorflow as tf

    return tf.image.resize(np.asarray(heatmaps)[..., None], (size, size)).numpy()[..., 0]


def pick_examples(labels, probabilities, *, kind, n=8, seed=0) -> np.ndarray:
    """Indices of `n` test images to explain, the same for every model.

    `probabilities` maps a model's name to its class probabilities. `kind="correct"`:
    random images that every model classifies correctly. `kind="mistakes"`: the
    images the last model gets wrong with the highest confidence.
    """
    labels = np.asarray(labels)
    predictions = {name: p.argmax(axis=1) for name, p in probabilities.items()}
    if kind == "correct":
        right = np.logical_and.reduce([p == labels for p in predictions.values()])
        candidates = np.flatnonzero(right)
        return np.sort(np.random.default_rng(seed).choice(candidates, size=min(n, len(candidates)),
                                                          replace=False))
    if kind == "mistakes":
        last = list(probabilities)[-1]
        wrong = np.flatnonzero(predictions[last] != labels)
        confidence = probabilities[last][wrong, predictions[last][wrong]]
        return wrong[np.argsort(-confidence)][:n]
    raise ValueError(f"kind must be 'correct' or 'mistakes', got {kind!r}")
