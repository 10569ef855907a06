"""Model builders: CNNs trained from scratch, the MobileNetV2 backbone, heads, unfreezing.

Every `build_*` function returns an uncompiled `keras.Model`; the CNNs and the transfer
model take preprocessed images (see `cifar_utils.preprocessing`), the heads take
pooled backbone features, and all of them output class probabilities, so any of them
can be trained with `cifar_utils.training.compile_classifier` and `fit`.

Advanced: `mobilenet_v2_weights` (where the ImageNet weights are found) and
`count_params` (used by the results files).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import keras
from keras import layers

from .data import NUM_CLASSES
from .training import under_strategy

WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
"""The ImageNet MobileNetV2 checkpoint (alpha 1.0, no classifier) in the Keras cache."""

WEIGHTS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
               + WEIGHTS_FILE)


class WeightsNotFoundError(FileNotFoundError):
    """The MobileNetV2 ImageNet weights are neither cached nor downloadable."""


class DamagedWeightsError(ValueError):
    """The cached MobileNetV2 weights file exists but cannot be read (truncated or not HDF5)."""


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


# --------------------------------------------------------------------------- from scratch


@under_strategy
def build_classic_cnn(input_shape=(32, 32, 3), num_classes=NUM_CLASSES):
    """The classic CIFAR-10 tutorial CNN, kept as the reference to beat.

    Three blocks of two 3x3 convolutions (32, 64, 128 filters), each followed by
    BatchNorm; max-pooling and dropout (0.25, 0.4, 0.5) close every block; then flatten
    and a softmax layer. About 0.3 M parameters, most of them in the final dense layer.
    """
    inputs = keras.Input(input_shape)
    x = inputs
    for filters, rate in zip((32, 64, 128), (0.25, 0.4, 0.5), strict=True):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
            x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Dropout(rate)(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="classic_cnn")


def _conv_bn(x, filters, weight_decay):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False,
                      kernel_regularizer=keras.regularizers.l2(weight_decay))(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


@under_strategy
def build_improved_cnn(input_shape=(32, 32, 3), num_classes=NUM_CLASSES, width=32,
                       dropout=0.2, weight_decay=5e-4):
    """A small residual CNN in the style of the fast "ResNet-9" CIFAR-10 networks.

    Layout (channels for `width=32`): a 32-channel stem; a stage that widens to 64,
    halves the resolution and adds a residual pair of convolutions; a 128-channel
    stage; a 256-channel stage with another residual pair; global max-pooling,
    dropout and softmax. Conv-BN-ReLU everywhere, L2 weight decay on the kernels.
    Residual connections let the deeper network train as easily as a shallow one, and
    global pooling replaces the big flatten-dense layer of the classic CNN.
    """
    inputs = keras.Input(input_shape)
    x = _conv_bn(inputs, width, weight_decay)
    for multiplier, residual in ((2, True), (4, False), (8, True)):
        x = _conv_bn(x, width * multiplier, weight_decay)
        x = layers.MaxPooling2D()(x)
        if residual:
            shortcut = x
            x = _conv_bn(x, width * multiplier, weight_decay)
            x = _conv_bn(x, width * multiplier, weight_decay)
            x = layers.Add()([x, shortcut])
    x = layers.GlobalMaxPooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="improved_cnn")


# --------------------------------------------------------------------------- MobileNetV2


def mobilenet_v2_weights(cache_dir=None, download=True) -> Path:
    """Path to the ImageNet MobileNetV2 weights, downloading them once if needed.

    The file lives in the Keras cache, `$KERAS_HOME/models/` (`~/.keras/models/` by
    default; `cache_dir` overrides `$KERAS_HOME`). Online and offline runs therefore
    use the same checkpoint: offline, copy the file there beforehand.
    """
    cache_root = Path(cache_dir or os.environ.get("KERAS_HOME") or "~/.keras").expanduser()
    cached = cache_root / "models" / WEIGHTS_FILE
    if cached.is_file():
        return cached
    where = f"$KERAS_HOME/models/ (here: {cached.parent})"
    if not download:
        raise WeightsNotFoundError(
            f"MobileNetV2 ImageNet weights not found: {WEIGHTS_FILE} is not in {where}. "
            f"Download it from {WEIGHTS_URL} and put it there, or allow the download."
        )
    try:
        path = keras.utils.get_file(fname=WEIGHTS_FILE, origin=WEIGHTS_URL,
                                    cache_subdir="models", cache_dir=str(cache_root))
    except Exception as err:  # Keras raises a bare Exception on network failure
        raise WeightsNotFoundError(
            f"MobileNetV2 ImageNet weights not found: {WEIGHTS_FILE} is not in {where} "
            f"and downloading it failed ({err}). On an offline machine, copy the file into "
            "that folder, or set KERAS_HOME to a folder whose models/ subfolder holds it."
        ) from None
    return Path(path)


@under_strategy
def build_mobilenet_v2(image_size=160, weights="imagenet", cache_dir=None):
    """MobileNetV2 without its classifier, ending in global average pooling (1280 features).

    Args:
        image_size: square input size. The network is fully convolutional, so the
            ImageNet weights (trained at 224x224) load at any size >= 32; CIFAR images
            are upsampled to this size in the data pipeline.
        weights: "imagenet" for the pretrained checkpoint (see `mobilenet_v2_weights`),
            or None for random initialisation (for tests and comparisons).
        cache_dir: overrides `$KERAS_HOME` when looking for the weights.

    The backbone comes frozen (`trainable=False`); see `unfreeze_top` for fine-tuning.
    It expects inputs in [-1, 1] (`keras.applications.mobilenet_v2.preprocess_input`).
    """
    path = mobilenet_v2_weights(cache_dir) if weights == "imagenet" else None
    if path is not None and path.read_bytes()[:8] != _HDF5_SIGNATURE:
        raise _damaged(path, "it is not an HDF5 file")
    try:
        backbone = keras.applications.MobileNetV2(
            input_shape=(image_size, image_size, 3), include_top=False,
            weights=str(path) if path else weights, pooling="avg")
    except (OSError, ValueError, KeyError) as err:
        if path is None:
            raise
        raise _damaged(path, f"reading it failed: {type(err).__name__}: {err}") from None
    backbone.trainable = False
    return backbone


def _damaged(path, problem) -> DamagedWeightsError:
    return DamagedWeightsError(
        f"the MobileNetV2 weights file {path} is damaged: {problem}. It is "
        f"{path.stat().st_size:,} bytes; a complete file is about 9.4 MB. Delete it to "
        f"download it again, or copy it again from a good copy ({WEIGHTS_FILE}, in "
        "$KERAS_HOME/models/)."
    )


@under_strategy
def build_linear_head(num_features=1280, num_classes=NUM_CLASSES, dropout=0.0):
    """A linear classifier on pooled features: (optional dropout) + softmax."""
    inputs = keras.Input((num_features,))
    x = layers.Dropout(dropout)(inputs) if dropout else inputs
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="linear_head")


@under_strategy
def build_large_head(num_features=1280, num_classes=NUM_CLASSES, units=256, dropout=0.5,
               l2=1e-4, batchnorm=True):
    """A one-hidden-layer classifier: Dense (L2) -> BatchNorm -> ReLU -> Dropout -> softmax.

    More capacity than `build_linear_head` to recombine frozen features, with BatchNorm,
    dropout and L2 weight decay to keep that capacity from overfitting. `batchnorm=False`
    and `l2=0` give the plain Dense + Dropout head of many tutorials.
    """
    regularizer = keras.regularizers.l2(l2) if l2 else None
    inputs = keras.Input((num_features,))
    x = layers.Dense(units, use_bias=not batchnorm, kernel_regularizer=regularizer)(inputs)
    if batchnorm:
        x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="large_head")


@under_strategy
def build_transfer_model(backbone, head):
    """Chain a backbone and a head into one model: images -> features -> probabilities.

    The backbone is called with `training=False`, so its BatchNorm layers keep using
    their ImageNet statistics even after `unfreeze_top` makes other layers trainable:
    updating them with small CIFAR batches would wreck the pretrained features.
    A head trained on cached features plugs in unchanged.
    """
    inputs = keras.Input(backbone.input_shape[1:])
    features = backbone(inputs, training=False)
    outputs = head(features)
    return keras.Model(inputs, outputs, name=f"{backbone.name}_{head.name}")


_BLOCK = re.compile(r"^block_(\d+)_")


def _block_index(layer_name: str, last_block: int) -> int:
    """MobileNetV2 block of a layer: 0 for the stem, 1..16, and the final 1x1 conv with 16."""
    match = _BLOCK.match(layer_name)
    if match:
        return int(match.group(1))
    if layer_name.startswith(("Conv_1", "out_relu")):
        return last_block
    return 0


def unfreeze_top(backbone, n, unit="layers"):
    """Make the top `n` layers (or blocks) of `backbone` trainable; BatchNorm stays frozen.

    Args:
        backbone: the model returned by `build_mobilenet_v2` (any functional model
            works with `unit="layers"`).
        n: how many layers or blocks to unfreeze, counted from the output. `n=0`
            freezes everything; a large `n` unfreezes the whole network.
        unit: "layers" counts every layer; "blocks" counts MobileNetV2's inverted
            residual blocks (block_16 is the top one and includes the final 1x1
            convolution, the stem counts as block 0).

    BatchNorm layers are always left frozen: in Keras 3 a frozen BatchNorm also runs in
    inference mode, keeping its ImageNet statistics. Returns the number of trainable
    layers (those with weights to learn).
    """
    if unit not in ("layers", "blocks"):
        raise ValueError(f"unit must be 'layers' or 'blocks', got {unit!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    body = [layer for layer in backbone.layers if not isinstance(layer, keras.layers.InputLayer)]
    if unit == "layers":
        chosen = set(map(id, body[max(len(body) - n, 0):])) if n else set()
    else:
        last = max(_block_index(layer.name, 0) for layer in body)
        if last == 0:
            raise ValueError("unit='blocks' needs a MobileNetV2 backbone "
                             "(layers named block_N_...)")
        first = last - n + 1
        chosen = {id(layer) for layer in body if n and _block_index(layer.name, last) >= first}
    backbone.trainable = True
    for layer in body:
        layer.trainable = id(layer) in chosen and not isinstance(
            layer, keras.layers.BatchNormalization)
    return sum(1 for layer in body if layer.trainable and layer.weights)


def split_mobilenet_v2(backbone, cut="block_12_add"):
    """Split a MobileNetV2 backbone at the end of a block: `(lower, upper)`, lower then upper.

    `lower` maps images to the activations of `cut` (e.g. 10x10x96 after block 12 at
    160x160); `upper` maps those activations to the pooled features. They share the
    backbone's layers, so `upper(lower(x))` is `backbone(x)` and unfreezing the top
    blocks of the backbone (or of `upper`) unfreezes them in `upper`. While `lower`
    stays frozen its output for an image never changes: compute it once
    (`extract_features(lower, ...)`) and train `upper` on the cache.

    `cut` must end a block (`block_N_add`, or `block_N_project_BN` for a block without a
    residual connection), so that no other connection crosses it.
    """
    ends = _block_ends(backbone)
    if cut not in ends:
        raise ValueError(f"cannot split at {cut!r}: choose the end of a block, one of "
                         f"{', '.join(ends)}")
    layer = backbone.get_layer(cut)
    lower = keras.Model(backbone.input, layer.output, name=f"{backbone.name}_to_{cut}")
    upper = keras.Model(layer.output, backbone.output, name=f"{backbone.name}_after_{cut}")
    return lower, upper


def _block_ends(backbone) -> list:
    """The last layer of every MobileNetV2 block, in order: where the network can be cut."""
    last = {}
    for layer in backbone.layers:
        match = _BLOCK.match(layer.name)
        if match:
            last[int(match.group(1))] = layer.name
    return [last[block] for block in sorted(last)][:-1]  # after the last block: nothing to train


@under_strategy
def chain(*models, name):
    """One model that runs `models` in turn, each in inference mode where it has BatchNorm.

    E.g. `chain(lower, finetuned, name=...)`: images through the frozen lower blocks, then
    the model fine-tuned on their cached output, gives the fine-tuned network on images.
    """
    inputs = keras.Input(models[0].input_shape[1:])
    outputs = inputs
    for model in models:
        outputs = model(outputs, training=False)
    return keras.Model(inputs, outputs, name=name)


def count_params(model) -> dict:
    """Trainable, non-trainable and total parameter counts of a model."""
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    total = int(model.count_params())
    return {"trainable": trainable, "non_trainable": total - trainable, "total": total}


def describe_model(model) -> str:
    """One line instead of `model.summary()`'s table: name, layers, parameters, trainable.

    Layers inside a nested model (the MobileNetV2 backbone of a transfer model) count too.
    """
    params = count_params(model)
    layers_ = sum(1 for layer in _all_layers(model)
                  if not isinstance(layer, (keras.layers.InputLayer, keras.Model)))
    return (f"{model.name}: {layers_} layers, {params['total']:,} parameters, "
            f"{params['trainable']:,} of them trained")


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
