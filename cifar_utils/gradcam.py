"""The plumbing of notebook 04's Grad-CAM, whose gradient tape is in the notebook: a layer's
activations and the last Dense layer's input, where the usual
`Model(inputs, [layer.output, model.output])` fails in a nested model ("Graph disconnected")."""

from __future__ import annotations

import keras
import numpy as np

from .models import flat_layers


def last_feature_map(model) -> str:
    """Name of the last layer, nested models included, whose output is a 2-D feature map."""
    maps = [layer.name for layer in flat_layers(model)
            if not isinstance(layer, keras.layers.InputLayer) and len(layer.output.shape) == 4]
    if not maps:
        raise ValueError(f"{model.name} has no layer with a 2-D feature map output")
    return maps[-1]


def last_layer(model):
    """The layer that computes `model`'s outputs, nested models followed down (a Dense)."""
    while isinstance(model, keras.Model):
        model = model.layers[-1]
    return model


def activations_and_outputs(model, x, name, *, before_last=False):
    """(activations of layer `name`, outputs of `model`) for inputs `x`, in inference mode;
    `before_last`: instead of the outputs, the input of `last_layer(model)`, which does not
    run. `model`'s top-level layers run one after another, nested models are followed down."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    last, activations = layers[-1], None
    if any(layer.name == name for layer in layers):  # one graph holds the layer: one model
        end = last.input if before_last else model.outputs[0]
        activations, x = keras.Model(model.input, [model.get_layer(name).output, end])(
            x, training=False)
        layers = [last] if before_last and isinstance(last, keras.Model) else []
    for layer in layers:
        if len(layer._inbound_nodes) != 1 and not isinstance(model, keras.Sequential):  # a chain
            raise ValueError(f"cannot follow {model.name}: {layer.name} is used more than once")
        inside = isinstance(layer, keras.Model) and name in {i.name for i in flat_layers(layer)}
        stop = before_last and layer is last
        if inside or (stop and isinstance(layer, keras.Model)):
            found, x = activations_and_outputs(layer, x, name if inside else None, before_last=stop)
            activations = found if inside else activations
        elif not stop:
            x = layer(x, training=False)
    if activations is None and name is not None:
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
