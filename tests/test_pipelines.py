"""Pipelines feed Keras' own preprocessing and augmentation layers; mirror views are exact."""

import keras
import numpy as np
from keras.applications.mobilenet_v2 import preprocess_input

from cifar_utils.data import LabelledImages
from cifar_utils.pipelines import make_dataset, make_pipelines


def batches(dataset):
    return np.concatenate([np.asarray(b[0] if isinstance(b, tuple) else b) for b in dataset])


def test_rescaling_layer_maps_pixels_to_0_1_in_the_pipeline(images):
    x, y = images
    out = batches(make_dataset(x, y, batch_size=16, preprocess=keras.layers.Rescaling(1 / 255)))
    assert out.dtype == np.float32 and np.allclose(out, x / 255, atol=1e-6)


def test_mobilenet_preprocess_input_maps_to_minus_one_one_and_leaves_the_images_alone(images):
    x, y = images
    before = x.copy()
    out = batches(make_dataset(x, y, batch_size=16, preprocess=preprocess_input))
    assert np.allclose(out, x / 127.5 - 1, atol=1e-6)
    assert out.min() >= -1 and out.max() <= 1
    assert np.array_equal(x, before)


def test_adapted_normalization_standardises_the_training_images(images):
    x, y = images
    standardize = keras.layers.Normalization()
    standardize.adapt(x)
    out = batches(make_dataset(x, y, batch_size=16, preprocess=standardize))
    assert np.allclose(out.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    assert np.allclose(out.std(axis=(0, 1, 2)), 1, atol=1e-3)


def test_keras_random_flips_run_inside_the_pipeline(images):
    """The notebooks' augmentation layers work in `tf.data`'s graph, drawing per image."""
    x, y = images
    flip = keras.layers.RandomFlip("horizontal", seed=1)
    out = batches(make_dataset(x, y, batch_size=16, augment=flip))
    plain = [np.array_equal(a, b) for a, b in zip(out, x.astype(np.float32), strict=True)]
    mirrored = [np.array_equal(a, b) for a, b in zip(out, x[:, :, ::-1].astype(np.float32),
                                                     strict=True)]
    assert all(p or m for p, m in zip(plain, mirrored, strict=True))
    assert 5 < sum(mirrored) < 35  # some of each, drawn image by image


def augmented_epochs(x, y, epochs=2):
    augment = keras.Sequential([keras.layers.RandomFlip("horizontal", seed=1),
                                keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect",
                                                               seed=1)])
    ds = make_dataset(x, y, batch_size=16, augment=augment, shuffle=True, seed=1)
    return [np.concatenate([images.numpy() for images, _ in ds]) for _ in range(epochs)]


def test_augmentation_is_repeatable_across_runs():
    """Keras' random layers keep one seed state; drawn from parallel map calls it would be
    advanced in a different order on every run, and two runs would train differently."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(1024, 32, 32, 3), dtype=np.uint8)
    y = np.arange(1024) % 10
    first, second = augmented_epochs(x, y), augmented_epochs(x, y)
    assert not np.array_equal(first[0], first[1])  # each epoch draws anew
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_augmentation_then_resize_then_preprocess(images):
    """At 32x32 first (cheap), then the resize and the model's normalisation."""
    x, y = images
    shift = keras.layers.RandomTranslation(0.25, 0.25, fill_mode="constant", seed=2)
    (out, labels), = list(make_dataset(x[:8], y[:8], batch_size=8, image_size=64, augment=shift,
                                       preprocess=keras.layers.Rescaling(1 / 255)))
    assert out.shape == (8, 64, 64, 3) and np.array_equal(labels, y[:8])
    out = out.numpy()
    assert 0 <= out.min() and out.max() <= 1
    resized = batches(make_dataset(x[:8], batch_size=8, image_size=64,
                                   preprocess=keras.layers.Rescaling(1 / 255)))
    assert not np.allclose(out, resized)  # shifted before the resize
    assert (out == 0).mean() > (resized == 0).mean()  # the constant fill, in black


def test_dataset_batches_resizes_and_preprocesses(images):
    x, y = images
    ds = make_dataset(x, y, batch_size=16, image_size=64, preprocess=lambda t: t / 255.0)
    batches = list(ds)
    assert [len(b[1]) for b in batches] == [16, 16, 8]
    first_images, first_labels = batches[0]
    assert first_images.shape == (16, 64, 64, 3) and first_images.dtype.name == "float32"
    assert 0.0 <= float(first_images.numpy().min()) and float(first_images.numpy().max()) <= 1.0
    assert np.array_equal(first_labels.numpy(), y[:16])


def test_dataset_without_labels_and_without_resize_keeps_pixels(images):
    x, _ = images
    (batch,) = list(make_dataset(x[:8], batch_size=8))
    assert np.array_equal(batch.numpy(), x[:8].astype(np.float32))


def test_dataset_shuffle_is_seeded_and_keeps_pairs(images):
    x, y = images
    first = list(make_dataset(x, y, batch_size=40, shuffle=True, seed=7))[0]
    again = list(make_dataset(x, y, batch_size=40, shuffle=True, seed=7))[0]
    assert np.array_equal(first[1], again[1]) and not np.array_equal(first[1], y)
    for image, label in zip(first[0].numpy(), first[1].numpy(), strict=True):
        index = np.flatnonzero((x == image).all(axis=(1, 2, 3)))[0]
        assert y[index] == label


def test_augmentation_runs_in_training_mode_inside_the_pipeline(images):
    x, y = images
    calls = []

    def augment(batch, training):
        calls.append(training)
        return batch[:, :, ::-1]  # mirror

    (batch, _), = list(make_dataset(x[:4], y[:4], batch_size=4, augment=augment))
    assert calls == [True]
    assert np.array_equal(batch.numpy(), x[:4, :, ::-1].astype(np.float32))


def test_mirrored_dataset_flips_every_image_left_to_right(images):
    x, _ = images
    out = batches(make_dataset(x[:8], batch_size=4, mirrored=True))
    assert np.array_equal(out, x[:8, :, ::-1].astype(np.float32))


def test_pipelines_cover_every_split_alike(images):
    x, y = images
    data = type("Splits", (), {"train": LabelledImages(x, y), "val": LabelledImages(x[:20], y[:20]),
                               "test": LabelledImages(x[20:], y[20:])})()
    pipes = make_pipelines(data, batch_size=8, image_size=48,
                           preprocess=keras.layers.Rescaling(1 / 255), seed=3)
    train = list(pipes.train)
    assert len(train) == 5 and train[0][0].shape == (8, 48, 48, 3)  # the batch size as given
    assert sorted(np.concatenate([b[1] for b in train]).tolist()) == sorted(y.tolist())
    assert np.array_equal(np.concatenate([b[1] for b in pipes.test]), y[20:])  # in order
    val, val_mirrored = batches(pipes.val), batches(pipes.val_mirrored)
    assert np.allclose(val_mirrored, val[:, :, ::-1], atol=1e-6)
    assert batches(pipes.test_mirrored).shape == (20, 48, 48, 3)


def test_only_the_training_pipeline_is_augmented(images):
    x, y = images
    data = type("Splits", (), {"train": LabelledImages(x, y), "val": LabelledImages(x[:20], y[:20]),
                               "test": LabelledImages(x[20:], y[20:])})()
    calls = []

    def augment(batch, training):
        calls.append(training)
        return batch[:, :, ::-1]  # mirror

    pipes = make_pipelines(data, batch_size=40, augment=augment, eval_batch_size=7, seed=0)
    (train, labels), = list(pipes.train)
    order = [np.flatnonzero((x[:, :, ::-1] == image).all(axis=(1, 2, 3)))[0]
             for image in train.numpy().astype(np.uint8)]
    assert np.array_equal(labels, y[order])  # every training image, mirrored
    assert [len(b[1]) for b in pipes.val] == [7, 7, 6]  # eval_batch_size
    assert np.array_equal(batches(pipes.val), x[:20].astype(np.float32))
    assert np.array_equal(batches(pipes.test), x[20:].astype(np.float32))
    assert calls == [True]  # traced once, for the training pipeline only
