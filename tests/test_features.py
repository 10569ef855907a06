"""The frozen-feature cache computes once, reuses, and invalidates on every key change."""

import dataclasses
import re

import keras
import numpy as np
import pytest

from cifar_utils.data import CifarData, LabelledImages, stratified_subset
from cifar_utils.features import (
    CachedFeatures,
    LabelledFeatures,
    _cached_features,
    extract_features,
    fingerprint,
    frozen_runner,
)
from cifar_utils.files import default_cache_dir

rescale = keras.layers.Rescaling(1 / 255)


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


def cached(extractor, x, tmp_path, *, image_size=32, preprocess=rescale, mirrored=False,
           dtype="float32", engine="tensorflow"):  # counting the calls needs TensorFlow
    """One array through the cache as `extract_features` sends each split, 32 at a time:
    (features, whether they were computed now, the cache file's name)."""
    return _cached_features(extractor, x, image_size, preprocess, mirrored, dtype, 32, tmp_path,
                            frozen_runner(extractor, engine))


def run(extractor, x, tmp_path, **kwargs):
    return cached(extractor, x, tmp_path, **kwargs)[0]


def splits_of(images):
    x, y = images
    return CifarData(train=LabelledImages(x[:20], y[:20]),
                     val=LabelledImages(x[20:30], y[20:30]),
                     test=LabelledImages(x[30:], y[30:]), provenance=None)


def test_features_are_computed_then_loaded_from_cache(extractor, images, tmp_path):
    x, _ = images
    first, computed, name = cached(extractor, x, tmp_path)
    assert extractor.calls == 2  # two batches: 32 and 8 images
    assert computed and re.fullmatch(r"counting-32px-[0-9a-f]{16}\.npy", name)
    assert first.shape == (40, 3) and first.dtype == np.float32
    assert np.allclose(first, x.mean(axis=(1, 2)) / 255, atol=1e-5)
    calls = extractor.calls
    again, computed, same = cached(extractor, x, tmp_path)
    assert not computed and same == name
    assert extractor.calls == calls and np.array_equal(first, again)
    assert [p.name for p in tmp_path.glob("*.npy")] == [name] and not list(tmp_path.glob("*.tmp"))


def test_mirrored_features_are_those_of_mirrored_images(images, tmp_path):
    x, _ = images
    extractor = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten()], name="pixels")
    mirrored, _, name = cached(extractor, x[:4], tmp_path, mirrored=True)
    assert np.allclose(mirrored, (x[:4, :, ::-1] / 255).reshape(4, -1), atol=1e-6)
    assert name.startswith("pixels-32px-mirrored-")
    assert len(list(tmp_path.glob("*mirrored*.npy"))) == 1


@pytest.mark.parametrize("change", ["image_size", "data", "weights", "preprocess", "mirrored",
                                    "dtype"])
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
    elif change == "preprocess":
        run(extractor, x, tmp_path, preprocess=lambda t: rescale(t) * 2)
    elif change == "mirrored":
        run(extractor, x, tmp_path, mirrored=True)
    else:
        stored, _, name = cached(extractor, x, tmp_path, dtype="float16")
        assert stored.dtype == np.load(tmp_path / name).dtype == np.float16  # half the bytes
    assert extractor.calls > calls
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_extract_features_reports_in_one_line_without_the_cache_path(extractor, images,
                                                                      tmp_path, capsys):
    data = splits_of(images)
    for _ in range(2):
        extract_features(extractor, data, image_size=32, preprocess=rescale, engine="tensorflow",
                         cache_dir=tmp_path)
    lines = capsys.readouterr().out.splitlines()
    what = "counting features at 32x32 of the train, validation and test images"
    assert len(lines) == 2
    assert re.fullmatch(f"Extracted {what} in \\d+ s \\(\\d+ images/s\\); cached for the next "
                        r"run\.", lines[0]), lines[0]
    assert lines[1] == f"Loaded {what} from the cache."
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


def test_normalization_layers_with_other_statistics_get_separate_caches(extractor, images,
                                                                         tmp_path):
    x, _ = images
    first, second = keras.layers.Normalization(), keras.layers.Normalization()
    first.adapt(x)
    second.adapt(x.astype(np.float32) + 10)  # same name, same variance, mean 10 higher
    one, two = run(extractor, x, tmp_path, preprocess=first), run(extractor, x, tmp_path,
                                                                    preprocess=second)
    assert not np.allclose(one, two)
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_extract_features_covers_every_split_and_its_mirror(extractor, images, tmp_path, capsys):
    x, y = images
    data = splits_of(images)
    first = extract_features(extractor, data, image_size=32, preprocess=rescale, mirrored=True,
                             engine="tensorflow", cache_dir=tmp_path)
    assert isinstance(first, CachedFeatures) and isinstance(first.train, LabelledFeatures)
    assert first.train.features.shape == (20, 3) and np.array_equal(first.test.labels, y[30:])
    assert np.allclose(first.val_mirrored.features, first.val.features, atol=1e-5)  # mean colour
    both = first.train_and_mirrored()
    assert len(both.features) == 40 and np.array_equal(both.labels, np.tile(y[:20], 2))
    again = extract_features(extractor, data, image_size=32, preprocess=rescale, mirrored=True,
                             engine="tensorflow", cache_dir=tmp_path)
    assert np.array_equal(again.test.features, first.test.features)
    plain = extract_features(extractor, data, image_size=32, preprocess=rescale,
                             engine="tensorflow", cache_dir=tmp_path)
    assert plain.train_mirrored is None
    with pytest.raises(ValueError, match="mirrored=True"):
        plain.train_and_mirrored()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Extracted counting features at 32x32 of the train, validation "
                               "and test images and their mirror images")
    assert lines[1].startswith("Loaded counting features") and lines[2].startswith("Loaded")
    assert len(list(tmp_path.glob("*.npy"))) == 6


def small_cnn():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((32, 32, 3)),
                             keras.layers.Conv2D(8, 3, activation="relu"),
                             keras.layers.DepthwiseConv2D(3, activation="relu"),
                             keras.layers.BatchNormalization(),
                             keras.layers.GlobalAveragePooling2D()], name="small_cnn")


def test_litert_and_tensorflow_extract_the_same_features(images, tmp_path):
    """The faster CPU engine changes nothing a float16 cache could keep (rounding ~5e-4)."""
    x, _ = images
    model = small_cnn()
    tensorflow = run(model, x, tmp_path / "tf", engine="tensorflow")
    litert = run(model, x, tmp_path / "litert", engine="litert")
    assert litert.shape == tensorflow.shape == (40, 8)
    np.testing.assert_allclose(litert, tensorflow, rtol=1e-5, atol=1e-5)


def test_the_engine_is_litert_on_a_cpu_and_tensorflow_with_a_gpu(monkeypatch):
    import tensorflow as tf

    from cifar_utils import features, shipping

    converted = []
    monkeypatch.setattr(shipping.LiteRTModel, "from_keras",
                        classmethod(lambda cls, model, num_threads: converted.append(model)))
    model = small_cnn()
    features.frozen_runner(model)
    assert converted == []  # converted when first run, not before
    dataset = tf.data.Dataset.from_tensor_slices(np.zeros((4, 32, 32, 3), np.float32)).batch(2)
    with pytest.raises(AttributeError):  # the stand-in above returns None, which cannot run
        features.frozen_runner(model)(dataset)
    assert converted == [model]

    with monkeypatch.context() as patch:
        patch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"])
        runner = features.frozen_runner(model)
    assert runner(dataset).shape == (4, 8)  # TensorFlow, no conversion
    assert converted == [model]
    with pytest.raises(ValueError, match="'litert', 'tensorflow' or None"):
        features.frozen_runner(model, engine="xnnpack")


def test_extract_features_converts_the_network_once(images, tmp_path, monkeypatch):
    from cifar_utils import shipping

    data = splits_of(images)
    conversions = []
    from_keras = shipping.LiteRTModel.from_keras.__func__
    monkeypatch.setattr(shipping.LiteRTModel, "from_keras", classmethod(
        lambda cls, model, num_threads: conversions.append(model) or from_keras(cls, model,
                                                                                  num_threads)))
    maps = extract_features(small_cnn(), data, image_size=32, preprocess=rescale, mirrored=True,
                            engine="litert", cache_dir=tmp_path)
    assert len(conversions) == 1 and maps.test_mirrored.features.shape == (10, 8)


def coded_features(n=40, mirrored=True):
    """Hand-made cached features: row i of train holds i, row i of train_mirrored -i - 1."""
    labels = (np.arange(n) % 10).astype(np.uint8)
    train = LabelledFeatures(np.repeat(np.arange(n, dtype=np.float32)[:, None], 3, axis=1), labels)
    other = LabelledFeatures(np.full((10, 3), 7.0, np.float32), np.arange(10, dtype=np.uint8))
    return CachedFeatures(train=train, val=other, test=other,
                          train_mirrored=LabelledFeatures(-train.features - 1, labels)
                          if mirrored else None,
                          val_mirrored=other if mirrored else None,
                          test_mirrored=other if mirrored else None, seconds=3.0)


def test_train_subset_takes_the_same_images_of_train_and_of_their_mirror_images():
    features = coded_features()
    subset = features.train_subset(20, seed=3)
    picked = subset.train.features[:, 0].astype(int)
    assert np.bincount(subset.train.labels).tolist() == [2] * 10
    assert np.array_equal(subset.train.labels, features.train.labels[picked])
    assert picked.tolist() == sorted(picked) and len(set(picked)) == 20  # in order, no repeats
    assert np.array_equal(subset.train_mirrored.features, -subset.train.features - 1)
    assert np.array_equal(subset.train_mirrored.labels, subset.train.labels)
    expected = stratified_subset(features.train.features, features.train.labels, 20, seed=3)
    assert np.array_equal(subset.train.features, expected.images)  # the seed is the subset's
    for part in ("val", "test", "val_mirrored", "test_mirrored"):
        assert getattr(subset, part) is getattr(features, part), part
    assert subset.seconds == 3.0 and len(features.train.labels) == 40  # the original is kept
    assert np.array_equal(features.train_subset(20).train.features,
                          features.train_subset(20, seed=42).train.features)
    assert not np.array_equal(features.train_subset(20, seed=4).train.features,
                              subset.train.features)
    plain = coded_features(mirrored=False).train_subset(10, seed=0)
    assert plain.train_mirrored is None and len(plain.train.labels) == 10
    with pytest.raises(ValueError, match="multiple of the 10 classes"):
        features.train_subset(15)


def test_nbytes_counts_every_stored_part():
    features = coded_features()
    assert features.nbytes == 2 * 40 * 3 * 4 + 4 * 10 * 3 * 4
    assert dataclasses.replace(features, train_mirrored=None).nbytes == features.nbytes - 40 * 12
