"""Normalisations map pixels to the documented ranges; augmentation layers behave."""

import numpy as np
import pytest

from cifar_utils.preprocessing import (
    augmentation,
    channel_stats,
    mobilenet_preprocess,
    scale_01,
    standardizer,
)


def test_scale_01_maps_extremes():
    out = np.asarray(scale_01(np.array([0, 51, 255], np.uint8)))
    assert out.dtype == np.float32 and np.allclose(out, [0.0, 0.2, 1.0])


def test_mobilenet_preprocess_maps_to_minus_one_one():
    out = np.asarray(mobilenet_preprocess(np.array([0.0, 127.5, 255.0])))
    assert np.allclose(out, [-1.0, 0.0, 1.0])


def test_standardizer_gives_zero_mean_unit_std_on_training_data(images):
    x, _ = images
    mean, std = channel_stats(x)
    assert mean.shape == (3,) and np.allclose(mean, x.mean(axis=(0, 1, 2)) / 255, atol=1e-6)
    out = np.asarray(standardizer(mean, std)(x))
    assert np.allclose(out.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    assert np.allclose(out.std(axis=(0, 1, 2)), 1, atol=1e-4)


def test_standardizer_rejects_bad_statistics():
    with pytest.raises(ValueError, match="3 positive stds"):
        standardizer([0.5, 0.5, 0.5], [0.2, 0.0, 0.2])


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
