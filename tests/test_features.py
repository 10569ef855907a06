"""The frozen-feature cache computes once, reuses, and invalidates on every key change."""

import keras
import numpy as np
import pytest

from cifar_utils.data import CifarSplits, Split
from cifar_utils.features import extract_features, features_of, fingerprint
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


def run(extractor, x, tmp_path, **kwargs):
    args = dict(image_size=32, preprocess=rescale, cache_dir=tmp_path, verbose=False,
                engine="tensorflow")  # counting the extractor's calls needs TensorFlow
    return features_of(extractor, x, **(args | kwargs))


def test_features_are_computed_then_loaded_from_cache(extractor, images, tmp_path):
    x, _ = images
    first = run(extractor, x, tmp_path)
    assert extractor.calls == 2  # two batches: 32 and 8 images
    assert first.shape == (40, 3) and first.dtype == np.float32
    assert np.allclose(first, x.mean(axis=(1, 2)) / 255, atol=1e-5)
    calls = extractor.calls
    again = run(extractor, x, tmp_path)
    assert extractor.calls == calls and np.array_equal(first, again)
    assert len(list(tmp_path.glob("*.npy"))) == 1 and not list(tmp_path.glob("*.tmp"))


def test_mirrored_features_are_those_of_mirrored_images(images, tmp_path):
    x, _ = images
    extractor = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten()], name="pixels")
    mirrored = run(extractor, x[:4], tmp_path, mirrored=True)
    assert np.allclose(mirrored, (x[:4, :, ::-1] / 255).reshape(4, -1), atol=1e-6)
    assert len(list(tmp_path.glob("*mirrored*.npy"))) == 1


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
        run(extractor, x, tmp_path, preprocess=lambda t: rescale(t) * 2)
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
    data = CifarSplits(train=Split(x[:20], y[:20]), val=Split(x[20:30], y[20:30]),
                       test=Split(x[30:], y[30:]), provenance=None)
    first = extract_features(extractor, data, image_size=32, preprocess=rescale, mirrored=True,
                             engine="tensorflow", cache_dir=tmp_path)
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

    x, y = images
    data = CifarSplits(train=Split(x[:20], y[:20]), val=Split(x[20:30], y[20:30]),
                       test=Split(x[30:], y[30:]), provenance=None)
    conversions = []
    from_keras = shipping.LiteRTModel.from_keras.__func__
    monkeypatch.setattr(shipping.LiteRTModel, "from_keras", classmethod(
        lambda cls, model, num_threads: conversions.append(model) or from_keras(cls, model,
                                                                                  num_threads)))
    maps = extract_features(small_cnn(), data, image_size=32, preprocess=rescale, mirrored=True,
                            engine="litert", cache_dir=tmp_path)
    assert len(conversions) == 1 and maps.test_mirrored.features.shape == (10, 8)
