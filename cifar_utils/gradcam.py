"""The plumbing of notebook 04's Grad-CAM, whose gradient tape is in the notebook.

Its forward pass needs a layer's activations and the model's outputs. The usual
`Model(model.inputs, [layer.output, model.output])` fails ("Graph disconnected") when the
layer sits in a nested model, as MobileNetV2 does: `activations_and_outputs` walks down.
"""

from __future__ import annotations

import keras
import numpy as np

from .models import flat_layers


def last_feature_map(model) -> str:
    """Name of the last layer, nested models included, whose output is a 2-D feature map."""
    found = None
    for layer in flat_layers(model):
        if not isinstance(layer, keras.layers.InputLayer) and len(layer.output.shape) == 4:
            found = layer.name
    if found is None:
        raise ValueError(f"{model.name} has no layer with a 2-D feature map output")
    return found


def activations_and_outputs(model, x, name):
    """(activations of layer `name`, outputs of `model`) for inputs `x`, in inference mode;
    `model`'s top-level layers run one after another, nested models are followed down."""
    if any(layer.name == name for layer in model.layers):
        both = keras.Model(model.input, [model.get_layer(name).output, model.outputs[0]])
        return both(x, training=False)
    activations = None
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if len(layer._inbound_nodes) != 1:
            raise ValueError(f"cannot follow {model.name}: {layer.name} is used more than once")
        if isinstance(layer, keras.Model) and any(inner.name == name for inner in flat_layers(layer)):
            activations, x = activations_and_outputs(layer, x, name)
        else:
            x = layer(x, training=False)
    if activations is None:
        raise ValueError(f"no layer named {name!r} in {model.name}")
    return activations, x


def pick_examples(labels, probabilities, *, kind, n=8, seed=0) -> np.ndarray:
    """Indices of `n` test images to explain with every model of `probabilities` (name ->
    class probabilities): `kind="correct"`, random images all of them get right;
    `kind="mistakes"`, those the last one gets wrong with the highest confidence."""
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
