"""Pipelines feed Keras' own preprocessing; augmentation layers behave; mirror views are exact."""

import keras
import numpy as np
import pytest
from keras.applications.mobilenet_v2 import preprocess_input

from cifar_utils.data import Split
from cifar_utils.preprocessing import augmentation, make_dataset, make_pipelines


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


def test_augmentation_changes_images_only_in_training(images):
    x, _ = images
    batch = x[:8].astype(np.float32)
    augment = augmentation(flip=True, translate=0.1, rotate=0.05, zoom=0.1, seed=1)
    assert [layer.__class__.__name__ for layer in augment.layers] == [
        "RandomFlip", "RandomTranslation", "RandomRotation", "RandomZoom"]
    trained = np.asarray(augment(batch, training=True))
    assert trained.shape == batch.shape and not np.allclose(trained, batch)
    assert np.allclose(np.asarray(augment(batch, training=False)), batch)


def test_augmentation_leaves_out_disabled_transforms():
    assert [layer.__class__.__name__ for layer in augmentation(translate=0).layers] == ["RandomFlip"]
    with pytest.raises(ValueError, match="does nothing"):
        augmentation(flip=False, translate=0)


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
    data = type("Splits", (), {"train": Split(x, y), "val": Split(x[:20], y[:20]),
                               "test": Split(x[20:], y[20:])})()
    pipes = make_pipelines(data, batch_size=8, image_size=48,
                           preprocess=keras.layers.Rescaling(1 / 255), seed=3)
    train = list(pipes.train)
    assert len(train) == 5 and train[0][0].shape == (8, 48, 48, 3)
    assert sorted(np.concatenate([b[1] for b in train]).tolist()) == sorted(y.tolist())
    assert np.array_equal(np.concatenate([b[1] for b in pipes.test]), y[20:])  # in order
    val, val_mirrored = batches(pipes.val), batches(pipes.val_mirrored)
    assert np.allclose(val_mirrored, val[:, :, ::-1], atol=1e-6)
    assert batches(pipes.test_mirrored).shape == (20, 48, 48, 3)
