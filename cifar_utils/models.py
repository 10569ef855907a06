"""The pieces of the transfer models that are not the lesson: the ImageNet weights, the heads
trained on pooled features, the cut of MobileNetV2 into lower and upper blocks, and what a
model has and trains."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import keras
from keras import layers

from .data import NUM_CLASSES

# The ImageNet MobileNetV2 checkpoint (alpha 1.0, no classifier), as the Keras cache names it
WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
WEIGHTS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
               + WEIGHTS_FILE)


class WeightsNotFoundError(FileNotFoundError):
    """The MobileNetV2 ImageNet weights are neither cached nor downloadable."""


class DamagedWeightsError(ValueError):
    """The cached MobileNetV2 weights file exists but cannot be read (truncated or not HDF5)."""


def mobilenet_v2_weights(download=True) -> Path:
    """The path of the ImageNet MobileNetV2 weights (224x224, no top) in the Keras cache,
    `$KERAS_HOME/models/`, downloaded once; missing or damaged, an error says what to do."""
    cache_root = Path(os.environ.get("KERAS_HOME") or "~/.keras").expanduser()
    path = cache_root / "models" / WEIGHTS_FILE
    where = f"$KERAS_HOME/models/ (here: {path.parent})"
    if not path.is_file():
        if not download:
            raise WeightsNotFoundError(
                f"MobileNetV2 ImageNet weights not found: {WEIGHTS_FILE} is not in {where}. "
                f"Download it from {WEIGHTS_URL} and put it there, or allow the download.")
        try:
            path = Path(keras.utils.get_file(fname=WEIGHTS_FILE, origin=WEIGHTS_URL,
                                             cache_subdir="models", cache_dir=str(cache_root)))
        except Exception as err:  # Keras raises a bare Exception on network failure
            raise WeightsNotFoundError(
                f"MobileNetV2 ImageNet weights not found: {WEIGHTS_FILE} is not in {where} "
                f"and downloading it failed ({err}). On an offline machine, copy the file "
                "into that folder, or set KERAS_HOME to a folder whose models/ subfolder "
                "holds it.") from None
    _check_hdf5(path)
    return path


def _check_hdf5(path):
    import h5py
    problem = None if path.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n" else "it is not an HDF5 file"
    try:
        if problem is None:
            h5py.File(path, "r").close()
    except OSError as err:
        problem = f"reading it failed: {err}"
    if problem:
        raise DamagedWeightsError(
            f"the MobileNetV2 weights file {path} is damaged: {problem}. It is "
            f"{path.stat().st_size:,} bytes; a complete file is about 9.4 MB. Delete it to "
            f"download it again, or copy it again from a good copy ({WEIGHTS_FILE}, in "
            "$KERAS_HOME/models/).")


def build_linear_head(num_features=1280, num_classes=NUM_CLASSES):
    """One softmax layer on pooled features; notebook 02 writes it out as `linear_head`."""
    inputs = keras.Input((num_features,))
    outputs = layers.Dense(num_classes, activation="softmax")(inputs)
    return keras.Model(inputs, outputs, name="linear_head")


def build_dense_head(num_features=1280, num_classes=NUM_CLASSES, *, units, dropout=0.5,
                     l2=0.0, batchnorm=False):
    """One hidden layer on pooled features: Dense (L2) -> [BatchNorm] -> ReLU -> Dropout -> softmax.
    Notebook 02 writes it out (`dense_head`) and explains it; a test keeps the two the same."""
    regularizer = keras.regularizers.l2(l2) if l2 else None
    inputs = keras.Input((num_features,))
    x = layers.Dense(units, use_bias=not batchnorm, kernel_regularizer=regularizer)(inputs)
    if batchnorm:
        x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=f"dense_{units}_head")


_BLOCK = re.compile(r"^block_(\d+)_")


def mobilenet_v2_block(layer_name) -> int:
    """MobileNetV2's block of a layer: 0 for the stem and block 0, 1 to 16, and 16 for the
    final 1x1 convolution (`Conv_1`, `out_relu`), which sits on top of block 16."""
    if match := _BLOCK.match(layer_name):
        return int(match.group(1))
    return 16 if layer_name.startswith(("Conv_1", "out_relu")) else 0


def split_mobilenet_v2(base, cut="block_12_add"):
    """Cut a MobileNetV2 after layer `cut` into `(lower, upper)`, sharing its layers, so that
    `upper(lower(x))` is `base(x)`. `cut` must end a block, so that no other connection
    crosses it; after block 12 at 160x160 the map is 10x10x96."""
    last = {mobilenet_v2_block(layer.name): layer.name for layer in base.layers
            if _BLOCK.match(layer.name)}
    ends = [last[block] for block in sorted(last)][:-1]  # after the last block: nothing left
    if cut not in ends:
        raise ValueError(f"cannot split at {cut!r}: choose the end of a block, one of "
                         f"{', '.join(ends)}")
    middle = base.get_layer(cut).output
    return (keras.Model(base.input, middle, name=f"{base.name}_to_{cut}"),
            keras.Model(middle, base.output, name=f"{base.name}_after_{cut}"))


def count_params(model) -> dict:
    """Trainable, non-trainable and total parameter counts of a model."""
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    total = int(model.count_params())
    return {"trainable": trainable, "non_trainable": total - trainable, "total": total}


def flat_layers(model):
    """The layers of `model`, those of nested models (the base of a transfer model) in place."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from flat_layers(layer)
        else:
            yield layer


def describe_model(model) -> str:
    """One line instead of `model.summary()`'s table: name, layers (nested ones too),
    parameters, and how many of them are trained."""
    params = count_params(model)
    count = sum(not isinstance(layer, keras.layers.InputLayer) for layer in flat_layers(model))
    return (f"{model.name}: {count} layers, {params['total']:,} parameters, "
            f"{params['trainable']:,} of them trained")
