"""Model shapes, parameter counts, weights resolution and unfreezing rules."""

import keras
import numpy as np
import pytest

from cifar_utils import models
from cifar_utils.models import (
    DamagedWeightsError,
    WeightsNotFoundError,
    build_classic_cnn,
    build_improved_cnn,
    build_large_head,
    build_linear_head,
    build_mobilenet_v2,
    build_transfer_model,
    count_params,
    describe_model,
    mobilenet_v2_weights,
    unfreeze_top,
)


@pytest.fixture(scope="module")
def backbone():
    """A randomly initialised MobileNetV2 at the smallest size Keras accepts (fast)."""
    return build_mobilenet_v2(image_size=32, weights=None)


def frozen_learnable_layers(model):
    """Names of layers with weights that stay frozen, BatchNorm aside (it always does)."""
    return [layer.name for layer in model.layers
            if layer.weights and not layer.trainable
            and not isinstance(layer, keras.layers.BatchNormalization)]


def conv_bn(c_in, c_out):
    """Parameters of a 3x3 conv with bias followed by BatchNorm (4 per channel)."""
    return 9 * c_in * c_out + c_out + 4 * c_out


def test_classic_cnn_matches_the_recipe():
    model = build_classic_cnn()
    assert model.output_shape == (None, 10)
    expected = (conv_bn(3, 32) + conv_bn(32, 32) + conv_bn(32, 64) + conv_bn(64, 64)
                + conv_bn(64, 128) + conv_bn(128, 128) + (4 * 4 * 128) * 10 + 10)
    counts = count_params(model)
    assert counts["total"] == expected
    assert counts["non_trainable"] == 2 * (2 * 32 + 2 * 64 + 2 * 128)  # BN moving stats
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == [0.25, 0.4, 0.5]


def test_improved_cnn_shape_and_width():
    narrow, wide = build_improved_cnn(width=8), build_improved_cnn(width=16)
    assert narrow.output_shape == wide.output_shape == (None, 10)
    assert any(isinstance(layer, keras.layers.Add) for layer in narrow.layers)
    # Conv parameters scale with width squared: doubling the width gives ~4x.
    assert 3.5 < count_params(wide)["total"] / count_params(narrow)["total"] < 4.1
    probs = narrow.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0)
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_backbone_is_frozen_mobilenetv2_with_pooled_features(backbone):
    assert backbone.output_shape == (None, 1280)
    assert count_params(backbone) == {"trainable": 0, "non_trainable": 2_257_984,
                                      "total": 2_257_984}


def test_heads_on_pooled_features():
    simple, large = build_linear_head(), build_large_head(units=64)
    assert simple.output_shape == large.output_shape == (None, 10)
    assert count_params(simple)["total"] == 1280 * 10 + 10
    kinds = [type(layer).__name__ for layer in large.layers[1:]]
    assert kinds == ["Dense", "BatchNormalization", "ReLU", "Dropout", "Dense"]
    assert large.layers[1].kernel_regularizer is not None
    plain = build_large_head(units=64, batchnorm=False, l2=0)
    assert "BatchNormalization" not in [type(layer).__name__ for layer in plain.layers]


def test_transfer_model_chains_backbone_and_head(backbone):
    model = build_transfer_model(backbone, build_linear_head())
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 10)
    assert count_params(model)["trainable"] == 12_810


def test_describe_model_is_one_line_with_nested_layers_counted(backbone):
    head = build_linear_head()
    assert describe_model(head) == "linear_head: 1 layers, 12,810 parameters, 12,810 of them trained"
    line = describe_model(build_transfer_model(backbone, head))
    nested = sum(1 for layer in backbone.layers if not isinstance(layer, keras.layers.InputLayer))
    assert line.startswith(f"mobilenetv2_1.00_32_linear_head: {nested + 1} layers, 2,270,794 ")
    assert line.endswith("12,810 of them trained") and "\n" not in line


def test_unfreeze_top_layers_keeps_batchnorm_frozen(backbone):
    body = backbone.layers[1:]
    n_trainable = unfreeze_top(backbone, 10)
    top, rest = body[-10:], body[:-10]
    assert not any(layer.trainable for layer in rest)
    for layer in top:
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        assert layer.trainable != is_bn, layer.name
    assert n_trainable == sum(1 for layer in top if layer.weights and layer.trainable)
    assert all(not w.trainable for layer in body if isinstance(layer, keras.layers.BatchNormalization)
               for w in layer.weights)
    unfreeze_top(backbone, 0)
    assert count_params(backbone)["trainable"] == 0


def test_unfreezing_more_layers_than_exist_unfreezes_all(backbone):
    unfreeze_top(backbone, len(backbone.layers) + 10)  # just past the count
    assert frozen_learnable_layers(backbone) == []
    unfreeze_top(backbone, 0)


def test_classic_last_four_layers_train_only_the_final_conv(backbone):
    unfreeze_top(backbone, 4)
    assert [layer.name for layer in backbone.layers if layer.trainable and layer.weights] == ["Conv_1"]
    unfreeze_top(backbone, 0)


def test_unfreeze_top_blocks(backbone):
    unfreeze_top(backbone, 2, unit="blocks")
    names = {layer.name for layer in backbone.layers if layer.trainable and layer.weights}
    assert {"block_15_expand", "block_16_project", "Conv_1"} <= names
    assert not any(name.startswith("block_14") for name in names)
    unfreeze_top(backbone, 100, unit="blocks")
    assert frozen_learnable_layers(backbone) == []
    unfreeze_top(backbone, 0)


def test_unfreeze_top_rejects_bad_arguments(backbone):
    with pytest.raises(ValueError, match="unit must be"):
        unfreeze_top(backbone, 2, unit="stages")
    with pytest.raises(ValueError, match="n must be >= 0"):
        unfreeze_top(backbone, -1)
    with pytest.raises(ValueError, match="MobileNetV2 backbone"):
        unfreeze_top(build_linear_head(), 1, unit="blocks")


def test_missing_weights_without_download_say_where_to_put_them(tmp_path):
    with pytest.raises(WeightsNotFoundError, match=r"not in \$KERAS_HOME/models/.*Download it from"):
        mobilenet_v2_weights(cache_dir=tmp_path, download=False)


def test_failed_download_says_where_to_put_the_file(tmp_path, monkeypatch):
    # A file:// URL to nowhere fails exactly like an offline machine, without a network.
    monkeypatch.setattr(models, "WEIGHTS_URL", (tmp_path / "nowhere.h5").as_uri())
    with pytest.raises(WeightsNotFoundError, match=r"downloading it failed.*copy the file into"):
        build_mobilenet_v2(image_size=32, cache_dir=tmp_path)
    assert not (tmp_path / "models" / models.WEIGHTS_FILE).exists()


def test_cached_weights_are_found_under_keras_home(tmp_path, monkeypatch):
    cached = tmp_path / "models" / models.WEIGHTS_FILE
    cached.parent.mkdir()
    cached.write_bytes(b"stand-in")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert mobilenet_v2_weights(download=False) == cached


def _truncated_hdf5(path):
    import h5py

    with h5py.File(path, "w") as f:
        f["weights"] = np.random.default_rng(0).normal(size=(512, 512))
    path.write_bytes(path.read_bytes()[:100_000])


@pytest.mark.parametrize("damage, problem", [
    (lambda path: path.write_bytes(b""), "it is not an HDF5 file. It is 0 bytes"),
    (lambda path: path.write_bytes(np.random.default_rng(1).bytes(5000)),
     "it is not an HDF5 file. It is 5,000 bytes"),
    (_truncated_hdf5, "reading it failed: .*It is 100,000 bytes"),
])
def test_a_damaged_weights_file_is_named_with_its_size_and_the_fix(tmp_path, damage, problem):
    cached = tmp_path / "models" / models.WEIGHTS_FILE
    cached.parent.mkdir()
    damage(cached)
    with pytest.raises(DamagedWeightsError, match=f"{cached}.* is damaged: {problem}.*"
                                                  "about 9.4 MB. Delete it to download it again"):
        build_mobilenet_v2(image_size=32, cache_dir=tmp_path)
