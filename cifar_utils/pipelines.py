"""`tf.data` pipelines from uint8 images, or cached activation maps, to model inputs. Batch
sizes are global, as in Keras; Keras' `preprocess=` functions get tensors only
(`preprocess_input` changes float NumPy arrays in place)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def make_dataset(x, y=None, *, batch_size=64, image_size=None, preprocess=None,
                 augment=None, mirrored=False, shuffle=False, seed=None):
    """A batched `tf.data.Dataset` of `(images, labels)` (or images alone if `y` is None).

    The uint8 images stay in memory at 32x32 (at 160x160, 50,000 would take 15 GB as float32);
    each batch is augmented, resized, preprocessed and prefetched. `mirrored=True` flips every
    image left to right: the second view of mirror averaging."""
    import tensorflow as tf
    if mirrored:
        x = x[:, :, ::-1]  # axis 2 is the image width
    data = (x,) if y is None else (x, np.asarray(y))
    ds = tf.data.Dataset.from_tensor_slices(data)
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    if augment is not None:  # not in parallel: Keras' random layers keep one seed state,
        ds = ds.map(lambda images, *labels: (  # which parallel calls would advance in
            augment(tf.cast(images, tf.float32), training=True), *labels))  # any order

    def transform(images, *labels):
        images = tf.cast(images, tf.float32)
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
    """Pipelines over the splits of `data` (`load_splits`), all preprocessed alike (and lazy):
    `train` shuffled and augmented, `val`, `test` and their mirror images plain and in order."""
    common = dict(image_size=image_size, preprocess=preprocess)
    plain = dict(common, batch_size=eval_batch_size)
    return Pipelines(
        train=make_dataset(*data.train, batch_size=batch_size, augment=augment, shuffle=True,
                           seed=seed, **common),
        val=make_dataset(*data.val, **plain),
        test=make_dataset(*data.test, **plain),
        val_mirrored=make_dataset(data.val.images, mirrored=True, **plain),
        test_mirrored=make_dataset(data.test.images, mirrored=True, **plain),
    )


def make_cached_dataset(features, *, batch_size, max_shift=0, seed=None):
    """Training batches `(float32 maps, labels)` over cached maps (`extract_features(lower, ...,
    mirrored=True)`): each image once an epoch, shuffled, as itself or its mirror image at random
    (a random flip); with `max_shift` > 0 also moved by up to that many whole cells, edges
    reflected (one cell of a 10x10 map is 16 pixels at 160x160)."""
    import tensorflow as tf
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
                                                   reshuffle_each_iteration=True).batch(batch_size)
    seeds = tf.data.Dataset.random(seed=seed).batch(2).batch(2)  # two seed pairs per batch
    return tf.data.Dataset.zip(batches, seeds).map(
        draw, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
