"""Heads, parameter counts, MobileNetV2's blocks, and where its ImageNet weights are found."""

import keras
import numpy as np
import pytest

from cifar_utils import models
from cifar_utils.models import (
    DamagedWeightsError,
    WeightsNotFoundError,
    build_dense_head,
    build_linear_head,
    count_params,
    describe_model,
    flat_layers,
    mobilenet_v2_block,
    mobilenet_v2_weights,
)


@pytest.fixture(scope="module")
def base():
    """A randomly initialised MobileNetV2 at the smallest size Keras accepts (fast), frozen."""
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False,
                                           weights=None, pooling="avg")
    model.trainable = False
    return model


def on_top(base, head):
    """Images -> frozen base (BatchNorm in inference mode) -> head, as notebook 02 builds it."""
    inputs = keras.Input(base.input_shape[1:])
    return keras.Model(inputs, head(base(inputs, training=False)),
                       name=f"{base.name}_{head.name}")


def test_count_params_of_a_frozen_mobilenetv2(base):
    assert base.output_shape == (None, 1280)
    assert count_params(base) == {"trainable": 0, "non_trainable": 2_257_984, "total": 2_257_984}
    head = build_dense_head(units=8, batchnorm=True)
    assert count_params(head) == {"trainable": 1280 * 8 + 2 * 8 + 8 * 10 + 10,
                                  "non_trainable": 2 * 8,  # BatchNorm's moving statistics
                                  "total": 1280 * 8 + 4 * 8 + 8 * 10 + 10}


def test_linear_head_is_one_softmax_layer():
    head = build_linear_head()
    assert head.name == "linear_head" and head.output_shape == (None, 10)
    assert count_params(head)["total"] == 1280 * 10 + 10
    small = build_linear_head(num_features=8, num_classes=4)
    assert small.input_shape == (None, 8) and count_params(small)["total"] == 8 * 4 + 4
    probabilities = small.predict(np.random.default_rng(0).normal(size=(3, 8)), verbose=0)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_dense_head_defaults_are_the_tutorial_head():
    head = build_dense_head(units=64)
    assert head.name == "dense_64_head" and head.output_shape == (None, 10)
    kinds = [type(layer).__name__ for layer in head.layers[1:]]
    assert kinds == ["Dense", "ReLU", "Dropout", "Dense"]
    hidden, dropout = head.layers[1], head.layers[3]
    assert hidden.units == 64 and hidden.use_bias and hidden.kernel_regularizer is None
    assert dropout.rate == 0.5
    assert count_params(head)["total"] == 1280 * 64 + 64 + 64 * 10 + 10
    with pytest.raises(TypeError):
        build_dense_head(1280, 10, 64)  # units is keyword-only, and required


def test_dense_head_with_batchnorm_and_weight_decay():
    head = build_dense_head(num_features=32, num_classes=5, units=16, dropout=0.3, l2=1e-4,
                            batchnorm=True)
    assert head.name == "dense_16_head" and head.input_shape == (None, 32)
    kinds = [type(layer).__name__ for layer in head.layers[1:]]
    assert kinds == ["Dense", "BatchNormalization", "ReLU", "Dropout", "Dense"]
    hidden = head.layers[1]
    assert not hidden.use_bias  # BatchNorm's offset takes the bias's place
    assert hidden.kernel_regularizer.get_config()["l2"] == pytest.approx(1e-4)
    assert head.layers[4].rate == 0.3 and head.output_shape == (None, 5)
    head(np.ones((2, 32), np.float32))
    assert len(head.losses) == 1 and float(head.losses[0]) > 0  # the L2 penalty


def test_describe_model_is_one_line_with_nested_layers_counted(base):
    head = build_linear_head()
    assert describe_model(head) == "linear_head: 1 layers, 12,810 parameters, 12,810 of them trained"
    line = describe_model(on_top(base, head))
    nested = sum(1 for layer in base.layers if not isinstance(layer, keras.layers.InputLayer))
    assert line.startswith(f"mobilenetv2_1.00_32_linear_head: {nested + 1} layers, 2,270,794 ")
    assert line.endswith("12,810 of them trained") and "\n" not in line


def test_flat_layers_go_down_nested_models_in_place(base):
    head = build_linear_head()
    model = on_top(base, head)
    layers = list(flat_layers(model))
    assert not any(isinstance(layer, keras.Model) for layer in layers)
    assert layers == [model.layers[0], *base.layers, *head.layers]  # in the order they run
    assert list(flat_layers(head)) == head.layers


def test_every_mobilenetv2_layer_has_its_block(base):
    network = [layer for layer in base.layers  # the pooling after out_relu has no weights
               if not isinstance(layer, keras.layers.GlobalAveragePooling2D)]
    blocks = [mobilenet_v2_block(layer.name) for layer in network]
    assert blocks == sorted(blocks) and set(blocks) == set(range(17))  # in order, 0 to 16
    stem = [layer.name for layer in base.layers if mobilenet_v2_block(layer.name) == 0]
    assert "Conv1" in stem and "expanded_conv_project_BN" in stem
    assert not any(name.startswith("block_") for name in stem)
    top = [layer.name for layer in network if mobilenet_v2_block(layer.name) == 16]
    assert top[0] == "block_16_expand" and top[-1] == "out_relu"
    assert {"block_16_project_BN", "Conv_1", "Conv_1_bn", "out_relu"} <= set(top)
    assert [mobilenet_v2_block(name) for name in ("block_1_expand", "block_9_add",
                                                  "block_12_project_BN")] == [1, 9, 12]
    assert mobilenet_v2_block("block_10") == 0  # a name that is not a block's layer


def test_the_top_blocks_are_the_layers_notebook_03_unfreezes(base):
    top_two = {layer.name for layer in base.layers
               if layer.weights and mobilenet_v2_block(layer.name) >= 15}
    assert {"block_15_expand", "block_16_project", "Conv_1", "Conv_1_bn"} <= top_two
    assert not any(name.startswith("block_14") for name in top_two)


# --------------------------------------------------------------------------- weights


def hdf5_file(path):
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["weights"] = np.arange(6.0)
    return path


def test_missing_weights_without_download_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match=r"not in \$KERAS_HOME/models/ \(here: "
                                                   f"{tmp_path / 'models'}\\).*Download it from"):
        mobilenet_v2_weights(download=False)
    assert not (tmp_path / "models").exists()


def test_without_keras_home_the_weights_are_under_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    cached = hdf5_file(tmp_path / ".keras" / "models" / models.WEIGHTS_FILE)
    assert mobilenet_v2_weights(download=False) == cached


def test_failed_download_says_where_to_put_the_file(tmp_path, monkeypatch):
    # A file:// URL to nowhere fails exactly like an offline machine, without a network.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(models, "WEIGHTS_URL", (tmp_path / "nowhere.h5").as_uri())
    with pytest.raises(WeightsNotFoundError, match=r"downloading it failed.*copy the file into"):
        mobilenet_v2_weights()
    assert not (tmp_path / "models" / models.WEIGHTS_FILE).exists()
    assert not list(tmp_path.glob("**/*.h5"))


def test_a_download_lands_in_the_keras_cache_where_keras_finds_it(tmp_path, monkeypatch):
    source = hdf5_file(tmp_path / "mirror" / "weights.h5")
    (tmp_path / "keras").mkdir()  # Keras creates $KERAS_HOME when it is imported
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(models, "WEIGHTS_URL", source.as_uri())
    path = mobilenet_v2_weights()
    assert path == tmp_path / "keras" / "models" / models.WEIGHTS_FILE
    assert path.read_bytes() == source.read_bytes()
    source.unlink()
    assert mobilenet_v2_weights(download=False) == path  # found, not downloaded again


def test_cached_weights_are_found_under_keras_home(tmp_path, monkeypatch):
    cached = hdf5_file(tmp_path / "models" / models.WEIGHTS_FILE)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert mobilenet_v2_weights(download=False) == cached
    assert mobilenet_v2_weights() == cached


def _truncated_hdf5(path):
    import h5py

    with h5py.File(path, "w") as f:
        f["weights"] = np.random.default_rng(0).normal(size=(512, 512))
    path.write_bytes(path.read_bytes()[:100_000])


@pytest.mark.parametrize("download", [False, True])
@pytest.mark.parametrize("damage, problem", [
    (lambda path: path.write_bytes(b""), "it is not an HDF5 file. It is 0 bytes"),
    (lambda path: path.write_bytes(np.random.default_rng(1).bytes(5000)),
     "it is not an HDF5 file. It is 5,000 bytes"),
    (_truncated_hdf5, "reading it failed: .*It is 100,000 bytes"),
])
def test_a_damaged_weights_file_is_named_with_its_size_and_the_fix(tmp_path, monkeypatch, damage,
                                                                   problem, download):
    cached = tmp_path / "models" / models.WEIGHTS_FILE
    cached.parent.mkdir()
    damage(cached)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(models, "WEIGHTS_URL", (tmp_path / "nowhere.h5").as_uri())
    with pytest.raises(DamagedWeightsError, match=f"{cached}.* is damaged: {problem}.*"
                                                  "about 9.4 MB. Delete it to download it again"):
        mobilenet_v2_weights(download=download)


def test_a_damaged_download_is_caught_too(tmp_path, monkeypatch):
    source = tmp_path / "mirror.html"
    source.write_text("<html>Sign in to continue</html>")  # what a captive portal serves
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(models, "WEIGHTS_URL", source.as_uri())
    with pytest.raises(DamagedWeightsError, match="is damaged: it is not an HDF5 file"):
        mobilenet_v2_weights()
