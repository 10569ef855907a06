"""Fine-tuning on cached activations: the split is exact, and so is a training step on it."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar_utils.data import CifarData, LabelledImages
from cifar_utils.features import CachedFeatures, LabelledFeatures, extract_features
from cifar_utils.models import build_linear_head, mobilenet_v2_block, split_mobilenet_v2
from cifar_utils.pipelines import make_cached_dataset


def random_mobilenet_v2():
    """MobileNetV2 at 32x32 with random weights (fast, offline), frozen as notebook 02 has it."""
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False,
                                          weights=None, pooling="avg")
    base.trainable = False
    return base


@pytest.fixture(scope="module")
def calibrated():
    """A random MobileNetV2 whose BatchNorm statistics fit its own activations.

    With random weights and BatchNorm's default statistics the activations shrink by
    orders of magnitude per block (1e-13 at the output), which would make every
    comparison below trivially true. Setting each BatchNorm's moving mean and variance
    to those of its input on a batch, layer by layer, keeps them around 1.
    """
    keras.utils.set_random_seed(0)
    model = random_mobilenet_v2()
    x = pixels(32, seed=9)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            inputs = keras.Model(model.input, layer.input)(x).numpy()
            layer.moving_mean.assign(inputs.mean(axis=(0, 1, 2)))
            layer.moving_variance.assign(inputs.var(axis=(0, 1, 2)) + 1e-3)
    return model.get_weights()


@pytest.fixture
def backbone(calibrated):
    model = random_mobilenet_v2()
    model.set_weights(calibrated)
    return model


def unfreeze_top_blocks(base, blocks):
    """Notebook 03's unfreezing: the layers of the top `blocks` blocks train, BatchNorm
    layers stay frozen (in Keras 3 a frozen BatchNorm also runs in inference mode)."""
    base.trainable = True
    for layer in base.layers:
        layer.trainable = (mobilenet_v2_block(layer.name) > 16 - blocks
                           and not isinstance(layer, keras.layers.BatchNormalization))


def on_top(part, head, name=None):
    """`part` (BatchNorm in inference mode), then `head`: one model, as notebook 03 builds it."""
    inputs = keras.Input(part.input_shape[1:])
    return keras.Model(inputs, head(part(inputs, training=False)), name=name)


def pixels(n=8, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, 32, 32, 3)).astype("float32")


def test_lower_then_upper_is_the_whole_backbone(backbone):
    lower, upper = split_mobilenet_v2(backbone, "block_12_add")
    x = pixels()
    assert lower.output_shape == (None, 2, 2, 96) and upper.output_shape == (None, 1280)
    whole = backbone(x).numpy()
    assert 0.05 < np.abs(whole).mean() < 20  # real activations, not vanishing ones
    assert np.allclose(upper(lower(x)), whole, rtol=1e-5, atol=1e-5)
    assert "block_12_add" in lower.name and "block_12_add" in upper.name  # part of the cache key


def test_split_accepts_only_block_ends(backbone):
    with pytest.raises(ValueError, match="end of a block.*block_12_add"):
        split_mobilenet_v2(backbone, "block_13_project")  # block 13 goes on after it
    with pytest.raises(ValueError, match="cannot split at 'block_5_project_BN'"):
        split_mobilenet_v2(backbone, "block_5_project_BN")  # block 5's shortcut crosses it


def test_a_step_on_the_cache_is_a_step_of_full_image_fine_tuning(backbone):
    """Same loss, same gradients, the same weights changed by the same amounts."""
    unfreeze_top_blocks(backbone, 3)
    lower, upper = split_mobilenet_v2(backbone, "block_12_add")
    head = build_linear_head()
    full = on_top(backbone, head)
    cached = on_top(upper, head)  # the same layers, hence the same variables
    x, y = pixels(16), np.arange(16) % 10
    maps = lower(x)
    loss = keras.losses.SparseCategoricalCrossentropy()

    def loss_and_gradients(model, inputs):
        with tf.GradientTape() as tape:
            value = loss(y, model(inputs, training=True))
        return float(value), tape.gradient(value, model.trainable_weights)

    full_loss, full_grads = loss_and_gradients(full, x)
    cached_loss, cached_grads = loss_and_gradients(cached, maps)
    assert [w.path for w in full.trainable_weights] == [w.path for w in cached.trainable_weights]
    trained = {w.path.split("/")[-2] for w in full.trainable_weights}
    assert {"block_14_expand", "block_16_project", "Conv_1"} <= trained
    assert not any(name.startswith("block_13") or name.endswith(("_BN", "_bn"))
                   for name in trained)  # block 13 and every BatchNorm stay frozen
    assert cached_loss == pytest.approx(full_loss, rel=1e-5)
    for g_full, g_cached in zip(full_grads, cached_grads, strict=True):
        assert np.linalg.norm(g_full) > 1e-4  # gradients that really move the weights
        assert np.allclose(g_full, g_cached, rtol=1e-4, atol=1e-6)

    start = [w.numpy() for w in full.weights]

    def one_step(model, inputs):
        for weight, value in zip(full.weights, start, strict=True):
            weight.assign(value)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss, jit_compile=False)
        model.train_on_batch(inputs, y)
        return [w.numpy() for w in full.weights]

    after_cached, after_full = one_step(cached, maps), one_step(full, x)
    changed = [not np.array_equal(a, b) for a, b in zip(start, after_cached, strict=True)]
    assert changed == [not np.array_equal(a, b) for a, b in zip(start, after_full, strict=True)]
    assert sum(changed) == len(full.trainable_weights) > 0  # exactly the trainable ones
    trainable = {w.path for w in full.trainable_weights}
    gradient = dict(zip([w.path for w in full.trainable_weights], full_grads, strict=True))
    for weight, before, a, b in zip(full.weights, start, after_cached, after_full, strict=True):
        if weight.path not in trainable:
            continue
        expected = -0.1 * np.asarray(gradient[weight.path])  # SGD: the full-image step
        assert np.linalg.norm((a - before) - expected) <= 1e-5 * np.linalg.norm(expected)
        # Keras' compiled step on the whole network rounds differently (oneDNN kernels):
        # close, not identical, to the eager full-image gradient.
        assert np.linalg.norm((b - before) - expected) <= 0.05 * np.linalg.norm(expected)


def test_activations_are_cached_in_float16_under_the_cut(backbone, tmp_path):
    lower, _ = split_mobilenet_v2(backbone, "block_12_add")
    x = (np.random.default_rng(1).uniform(0, 255, (12, 32, 32, 3))).astype(np.uint8)
    y = np.arange(12) % 10
    data = CifarData(LabelledImages(x[:6], y[:6]), LabelledImages(x[6:9], y[6:9]),
                     LabelledImages(x[9:], y[9:]), None)
    preprocess = keras.applications.mobilenet_v2.preprocess_input
    maps = extract_features(lower, data, image_size=32, preprocess=preprocess, mirrored=True,
                            dtype="float16", cache_dir=tmp_path)
    assert maps.train.features.dtype == np.float16 and maps.train.features.shape == (6, 2, 2, 96)
    expected = lower.predict(preprocess(x[:6, :, ::-1].astype("float32")), verbose=0)
    assert np.allclose(maps.train_mirrored.features, expected, atol=1e-2, rtol=1e-2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 6 and all(name.startswith(lower.name) for name in names)
    float32 = extract_features(lower, data, image_size=32, preprocess=preprocess,
                               engine="tensorflow", cache_dir=tmp_path)  # no second conversion
    assert float32.train.features.dtype == np.float32  # another key, another file
    np.testing.assert_allclose(float32.train.features, maps.train.features, rtol=1e-2, atol=1e-2)
    assert len(list(tmp_path.iterdir())) == 9


def cached_features(n=40):
    maps = np.arange(n * 3 * 3 * 2, dtype=np.float16).reshape(n, 3, 3, 2)
    labels = np.arange(n) % 10
    mirrored = maps[:, :, ::-1]
    return CachedFeatures(train=LabelledFeatures(maps, labels), val=None, test=None,
                          train_mirrored=LabelledFeatures(mirrored, labels), val_mirrored=None,
                          test_mirrored=None, seconds=0.0)


def epoch(dataset):
    maps, labels = zip(*[(m.numpy(), lab.numpy()) for m, lab in dataset], strict=True)
    return np.concatenate(maps), np.concatenate(labels)


def test_each_epoch_draws_every_image_once_plain_or_mirrored():
    features = cached_features()
    dataset = make_cached_dataset(features, batch_size=16, seed=3)
    maps, labels = epoch(dataset)
    assert maps.dtype == np.float32 and maps.shape == (40, 3, 3, 2)
    index = (maps[:, 0, :, 0].min(axis=1) // 18).astype(int)  # which image each map is
    assert sorted(index.tolist()) == list(range(40)) and (labels == index % 10).all()
    mirrored = [not np.array_equal(m, features.train.features[i]) for m, i in zip(maps, index,
                                                                                  strict=True)]
    assert 5 < sum(mirrored) < 35
    for m, i, flip in zip(maps, index, mirrored, strict=True):
        source = features.train_mirrored if flip else features.train
        assert np.array_equal(m, source.features[i])
    again, _ = epoch(dataset)
    assert not np.array_equal(again, maps)  # a new order and new draws every epoch
    assert np.array_equal(epoch(make_cached_dataset(features, batch_size=16, seed=3))[0], maps)


def test_shifts_move_maps_by_whole_cells():
    features = cached_features()
    maps, labels = epoch(make_cached_dataset(features, batch_size=8, max_shift=1, seed=0))
    offsets = []
    for m, label in zip(maps, labels, strict=True):
        i = int(m.min() // 18)  # values of image i lie in [18 i, 18 i + 17]
        assert label == i % 10
        found = [(dy, dx) for source in (features.train, features.train_mirrored)
                 for dy in range(3) for dx in range(3)
                 if np.array_equal(m, np.pad(source.features[i].astype(np.float32),
                                             ((1, 1), (1, 1), (0, 0)),
                                             mode="symmetric")[dy:dy + 3, dx:dx + 3])]
        assert found, "every map is a plain or mirrored map moved by whole cells"
        offsets += found
    assert len({offset for offset in offsets}) > 5  # shifts vary from image to image
    with pytest.raises(ValueError, match="mirrored=True"):
        make_cached_dataset(dataclasses.replace(features, train_mirrored=None), batch_size=8)


@pytest.mark.parametrize("engine", ["litert", "tensorflow"])
def test_pooled_features_from_the_maps_are_cached_and_match_the_backbone(backbone, tmp_path,
                                                                        capsys, engine):
    lower, upper = split_mobilenet_v2(backbone, "block_12_add")
    x = pixels(6)
    maps = lower.predict(x, verbose=0)
    part = LabelledFeatures(maps, np.arange(6))
    features = CachedFeatures(part, part, part, None, None, None, seconds=2.0)
    pooled = features.map(upper, engine=engine, cache_dir=tmp_path)
    assert np.allclose(pooled.test.features, backbone.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
    assert pooled.train_mirrored is None and pooled.seconds >= 2.0
    again = features.map(upper, engine=engine, cache_dir=tmp_path)
    assert np.array_equal(again.val.features, pooled.val.features)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Computed") and lines[1].endswith("from the cache.")
    assert features.nbytes == 3 * maps.nbytes


def test_the_lower_part_then_the_model_fine_tuned_on_its_maps_take_images(backbone):
    """What notebook 03 evaluates and saves: images -> frozen lower -> fine-tuned upper + head."""
    lower, upper = split_mobilenet_v2(backbone, "block_12_add")
    head = build_linear_head()
    on_maps = on_top(upper, head, name="on_maps")
    model = on_top(lower, on_maps, name="images_in")
    x = pixels(4)
    assert model.input_shape == (None, 32, 32, 3)
    np.testing.assert_allclose(model(x), on_top(backbone, head)(x), rtol=1e-5, atol=1e-5)
