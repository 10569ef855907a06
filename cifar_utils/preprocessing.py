"""From uint8 images to model inputs: augmentation and `tf.data` pipelines.

`make_pipelines` builds every pipeline a model needs from the splits of `load_splits`;
`make_dataset` one pipeline over arrays.

The normalisations themselves are Keras' own, passed in as `preprocess=`:

* `keras.layers.Rescaling(1 / 255)` scales pixels to [0, 1];
* `keras.layers.Normalization()`, after `.adapt(training_images)`, standardises each
  channel to zero mean and unit variance;
* `keras.applications.mobilenet_v2.preprocess_input` maps pixels to [-1, 1], the range
  MobileNetV2 was trained on. It changes float NumPy arrays in place; `make_dataset`
  only ever hands it tensors.

Which one to use depends on the model: a network trained from scratch is happy with
[0, 1] or standardised inputs, while a pretrained network must see exactly the
normalisation it was trained with.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


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


def make_dataset(x, y=None, *, batch_size=64, image_size=None, preprocess=None,
                 augment=None, mirrored=False, shuffle=False, seed=None):
    """A batched `tf.data.Dataset` of `(images, labels)` (or images alone if `y` is None).

    The uint8 arrays stay in memory at 32x32; each batch is, in order, augmented
    (`augment`, a Keras layer or model, applied at 32x32 where it is cheap), resized to
    `image_size` (bilinear), passed through `preprocess` (see the module docstring) and
    prefetched. Upsampling on the fly is what makes 160x160 inputs possible at all:
    50,000 images at 160x160 would be 15 GB as float32.

    `mirrored=True` feeds every image flipped left to right instead: the second view
    for test-time mirroring (`metrics.evaluate(..., mirrored=...)`).
    """
    import tensorflow as tf

    from .training import replicas

    if mirrored:
        x = x[:, :, ::-1]  # axis 2 is the image width
    data = (x,) if y is None else (x, np.asarray(y))
    ds = tf.data.Dataset.from_tensor_slices(data)
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size * replicas())  # batch_size is per replica (per GPU)

    def transform(images, *labels):
        images = tf.cast(images, tf.float32)
        if augment is not None:
            images = augment(images, training=True)
        if image_size is not None and image_size != images.shape[1]:
            images = tf.image.resize(images, (image_size, image_size))
        if preprocess is not None:
            images = preprocess(images)
        return (images, *labels) if labels else images

    ds = ds.map(transform, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


class Pipelines(NamedTuple):
    """The `tf.data` pipelines of one model: training, validation, test, and mirror views."""

    train: object
    val: object
    test: object
    val_mirrored: object
    test_mirrored: object


def make_pipelines(data, *, batch_size, image_size=None, preprocess=None, augment=None,
                   seed=None, eval_batch_size=256) -> Pipelines:
    """Pipelines over the splits of `data` (from `load_splits`), all preprocessed alike.

    `train` is shuffled (with `seed`) and augmented, in batches of `batch_size`; `val`
    and `test` are plain and in order, in batches of `eval_batch_size`, and so are
    `val_mirrored` and `test_mirrored`, the same images flipped left to right for
    test-time mirroring. Pipelines are lazy: an unused one costs nothing.
    """
    common = dict(image_size=image_size, preprocess=preprocess)
    return Pipelines(
        train=make_dataset(*data.train, batch_size=batch_size, augment=augment, shuffle=True,
                           seed=seed, **common),
        val=make_dataset(*data.val, batch_size=eval_batch_size, **common),
        test=make_dataset(*data.test, batch_size=eval_batch_size, **common),
        val_mirrored=make_dataset(data.val.images, batch_size=eval_batch_size, mirrored=True,
                                  **common),
        test_mirrored=make_dataset(data.test.images, batch_size=eval_batch_size, mirrored=True,
                                   **common),
    )


def make_cached_dataset(features, *, batch_size, max_shift=0, seed=None):
    """Training batches over cached activation maps, each image drawn plain or mirrored.

    `features` comes from `extract_features(lower, data, ..., mirrored=True)`: the maps
    of the training images and of their mirror images. Every epoch visits each image
    once, in a shuffled order, as itself or as its mirror image at random: the cached
    counterpart of a random flip. With `max_shift` > 0 each map also moves by up to that
    many whole cells in each direction (edges filled by reflection): the counterpart of
    a random shift, on the map's coarser grid (one cell of a 10x10 map is 16 pixels at
    160x160). Batches are `(float32 maps, labels)`; `batch_size` is per replica.
    """
    import tensorflow as tf

    from .training import replicas

    if features.train_mirrored is None:
        raise ValueError("make_cached_dataset needs the mirrored maps: extract them with "
                         "mirrored=True")
    plain = tf.constant(features.train.features)
    mirror = tf.constant(features.train_mirrored.features)
    labels = tf.constant(features.train.labels)
    count, height, width = plain.shape[0], plain.shape[1], plain.shape[2]

    def draw(indices, seeds):
        flip = tf.random.stateless_uniform(tf.shape(indices), seed=seeds[0]) < 0.5
        maps = tf.where(flip[:, None, None, None], tf.gather(mirror, indices),
                        tf.gather(plain, indices))
        maps = tf.cast(maps, tf.float32)
        if max_shift:
            pad = [[0, 0], [max_shift, max_shift], [max_shift, max_shift], [0, 0]]
            padded = tf.pad(maps, pad, mode="SYMMETRIC")
            shifts = tf.random.stateless_uniform((tf.shape(indices)[0], 2), seed=seeds[1],
                                                 minval=0, maxval=2 * max_shift + 1,
                                                 dtype=tf.int32)
            rows = shifts[:, :1] + tf.range(height)[None, :]
            columns = shifts[:, 1:] + tf.range(width)[None, :]
            maps = tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), columns, axis=2,
                             batch_dims=1)
        return maps, tf.gather(labels, indices)

    batches = tf.data.Dataset.range(count).shuffle(count, seed=seed,
                                                   reshuffle_each_iteration=True)
    batches = batches.batch(batch_size * replicas())
    seeds = tf.data.Dataset.random(seed=seed).batch(2).batch(2)  # two seed pairs per batch
    return tf.data.Dataset.zip(batches, seeds).map(
        draw, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
