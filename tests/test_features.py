"""The frozen-feature cache computes once, reuses, and invalidates on every key change."""

import keras
import numpy as np
import pytest

from cifar_utils.features import default_cache_dir, extract_features, fingerprint
from cifar_utils.preprocessing import scale_01


class CountingExtractor(keras.Model):
    """Mean colour per channel plus a learnable offset; counts the batches it processes."""

    def __init__(self):
        super().__init__(name="counting")
        self.offset = self.add_weight(shape=(3,), initializer="zeros")
        self.run_eagerly = True  # so that `call` runs once per batch, not once per trace
        self.calls = 0

    def call(self, images):
        self.calls += 1
        return keras.ops.mean(images, axis=(1, 2)) + self.offset


@pytest.fixture
def extractor():
    model = CountingExtractor()
    model(np.zeros((1, 32, 32, 3), np.float32))
    model.calls = 0
    return model


def run(extractor, x, tmp_path, **kwargs):
    args = dict(image_size=32, preprocess=scale_01, cache_dir=tmp_path, verbose=False)
    return extract_features(extractor, x, **(args | kwargs))


def test_features_are_computed_then_loaded_from_cache(extractor, images, tmp_path):
    x, _ = images
    first = run(extractor, x, tmp_path)
    assert extractor.calls == 1  # one batch of 40
    assert first.shape == (40, 3) and first.dtype == np.float32
    assert np.allclose(first, x.mean(axis=(1, 2)) / 255, atol=1e-5)
    calls = extractor.calls
    again = run(extractor, x, tmp_path)
    assert extractor.calls == calls and np.array_equal(first, again)
    assert len(list(tmp_path.glob("*.npy"))) == 1 and not list(tmp_path.glob("*.tmp"))


def test_flipped_features_are_those_of_mirrored_images(images, tmp_path):
    x, _ = images
    extractor = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten()], name="pixels")
    flipped = run(extractor, x[:4], tmp_path, flip=True)
    assert np.allclose(flipped, (x[:4, :, ::-1] / 255).reshape(4, -1), atol=1e-6)
    assert len(list(tmp_path.glob("*flip*.npy"))) == 1


@pytest.mark.parametrize("change", ["image_size", "data", "weights", "preprocess"])
def test_any_change_of_the_key_recomputes(extractor, images, tmp_path, change):
    x, _ = images
    run(extractor, x, tmp_path)
    calls = extractor.calls
    if change == "image_size":
        run(extractor, x, tmp_path, image_size=48)
    elif change == "data":
        run(extractor, x[:20], tmp_path)
    elif change == "weights":
        extractor.offset.assign([1.0, 1.0, 1.0])
        assert np.allclose(run(extractor, x, tmp_path), x.mean(axis=(1, 2)) / 255 + 1, atol=1e-5)
    else:
        run(extractor, x, tmp_path, preprocess=lambda t: scale_01(t) * 2)
    assert extractor.calls > calls
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_reports_in_one_line(extractor, images, tmp_path, capsys):
    x, _ = images
    run(extractor, x, tmp_path, verbose=True)
    run(extractor, x, tmp_path, verbose=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Extracted features of 40 images at 32x32")
    assert lines[1].startswith("Loaded cached features of 40 images")
    assert str(tmp_path) not in "".join(lines)


def test_fingerprint_sees_content_shape_and_dtype():
    a = np.arange(6, dtype=np.uint8)
    assert fingerprint(a) == fingerprint(a.copy())
    assert fingerprint(a) != fingerprint(a.reshape(2, 3))
    assert fingerprint(a) != fingerprint(a.astype(np.int16))
    assert fingerprint(a) != fingerprint(a[::-1])


def test_default_cache_dir_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CIFAR_UTILS_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CIFAR_UTILS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "cifar_utils"


def test_preprocessing_functions_with_one_name_get_separate_caches(extractor, images, tmp_path):
    from cifar_utils.preprocessing import standardizer

    x, _ = images
    first = run(extractor, x, tmp_path, preprocess=standardizer([0.5] * 3, [0.25] * 3))
    second = run(extractor, x, tmp_path, preprocess=standardizer([0.4] * 3, [0.25] * 3))
    assert np.allclose(second - first, 0.4, atol=1e-4)  # (x - 0.4)/0.25 - (x - 0.5)/0.25
    assert len(list(tmp_path.glob("*.npy"))) == 2
