"""Input normalisation and data augmentation.

Each normalisation takes images with pixel values in [0, 255] (uint8 or float) and
works on NumPy arrays and TensorFlow tensors alike, so the same function serves a
`tf.data` pipeline (`make_dataset(..., preprocess=...)`) and a quick look in NumPy.
Which one to use depends on the model: a network trained from scratch is happy with
[0, 1] or standardised inputs, while a pretrained network must see exactly the
normalisation it was trained with (MobileNetV2: [-1, 1]).
"""

from __future__ import annotations

import numpy as np


def scale_01(images):
    """Scale pixel values from [0, 255] to [0, 1] (float32)."""
    import tensorflow as tf

    return tf.cast(images, tf.float32) / 255.0


def channel_stats(x_train):
    """Per-channel mean and standard deviation of training images, in [0, 1] units.

    Compute them on the training split only: statistics of validation or test data
    would leak information about them into the model.
    """
    x = np.asarray(x_train, dtype=np.float64) / 255.0
    mean, std = x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))
    return mean.astype(np.float32), std.astype(np.float32)


def standardizer(mean, std):
    """A preprocess function mapping [0, 255] pixels to zero mean, unit variance per channel.

    Use with the statistics of `channel_stats(x_train)`:
    `make_dataset(..., preprocess=standardizer(*channel_stats(x_train)))`.
    """
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    if mean.shape != (3,) or std.shape != (3,) or np.any(std <= 0):
        raise ValueError(f"expected 3 channel means and 3 positive stds, got {mean} and {std}")

    def standardize(images):
        return (scale_01(images) - mean) / std

    return standardize


def mobilenet_preprocess(images):
    """Scale [0, 255] pixels to [-1, 1], the input range MobileNetV2 was trained on."""
    import tensorflow as tf

    return tf.cast(images, tf.float32) / 127.5 - 1.0


def augmentation(flip=True, translate=0.1, rotate=0.0, zoom=0.0, seed=None):
    """Random image transformations as a Keras model of preprocessing layers.

    Args:
        flip: mirror left-right (CIFAR classes are symmetric that way; up-down is not).
        translate: maximum shift as a fraction of the image size.
        rotate: maximum rotation as a fraction of a full turn (0.05 = 18 degrees).
        zoom: maximum zoom in or out as a fraction of the image size.
        seed: makes the random draws repeatable.

    The layers are only active when called with `training=True` (`make_dataset` does
    that for the training pipeline), so the same model is harmless at test time.
    Transformations that are 0 are left out.
    """
    import keras

    layers = []
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if translate:
        layers.append(keras.layers.RandomTranslation(translate, translate,
                                                     fill_mode="reflect", seed=seed))
    if rotate:
        layers.append(keras.layers.RandomRotation(rotate, fill_mode="reflect", seed=seed))
    if zoom:
        layers.append(keras.layers.RandomZoom(zoom, fill_mode="reflect", seed=seed))
    if not layers:
        raise ValueError("augmentation() with every transformation off does nothing; "
                         "pass augment=None to make_dataset instead.")
    return keras.Sequential(layers, name="augmentation")
