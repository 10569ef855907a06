"""The real dataset and ImageNet weights, when the documented variables point at them.

CI sets CIFAR10_DIR and KERAS_HOME (see .ci/run), so these run there; on a machine
without local copies they are skipped rather than downloading 180 MB. Under CI a
missing copy is a failure, not a skip: a silently skipped check proves nothing.
"""

import os
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
from keras.applications.mobilenet_v2 import preprocess_input

from cifar_utils import extract_features, load_cifar10, mobilenet_v2_weights
from cifar_utils.data import CifarData, LabelledImages
from cifar_utils.models import WEIGHTS_FILE
from cifar_utils.reader import ModifiedDataWarning


def require(variable, what):
    if not os.environ.get(variable):
        if os.environ.get("CI"):
            pytest.fail(f"CI must set {variable} to {what} (see .ci/run)")
        pytest.skip(f"set {variable} to {what} to run this test")


def test_real_cifar10_has_the_official_shape_and_balance():
    require("CIFAR10_DIR", "a local CIFAR-10 copy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModifiedDataWarning)
        ((x_train, y_train), (x_test, y_test)), provenance = load_cifar10(return_provenance=True)
    assert x_train.shape == (50_000, 32, 32, 3) and x_test.shape == (10_000, 32, 32, 3)
    assert np.bincount(y_train).tolist() == [5_000] * 10
    assert np.bincount(y_test).tolist() == [1_000] * 10
    assert len(provenance.md5) == 6
    print(provenance.describe())


def test_imagenet_backbone_produces_informative_features(tmp_path):
    require("CIFAR10_DIR", "a local CIFAR-10 copy")
    require("KERAS_HOME", f"a folder whose models/ holds {WEIGHTS_FILE}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModifiedDataWarning)
        _, (x_test, y_test) = load_cifar10()
    path = mobilenet_v2_weights(download=False)  # checked: present and a readable HDF5 file
    assert path.name == WEIGHTS_FILE and path.parent.parent == Path(os.environ["KERAS_HOME"])
    # The 224x224 checkpoint, at 96x96 as notebook 02 loads it at every size (weights="imagenet"
    # would fetch Keras' separate 96x96 checkpoint).
    backbone = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False,
                                              weights=str(path), pooling="avg")
    backbone.trainable = False
    data = CifarData(train=LabelledImages(x_test[:64], y_test[:64]),
                     val=LabelledImages(x_test[64:74], y_test[64:74]),
                     test=LabelledImages(x_test[74:84], y_test[74:84]), provenance=None)
    features = extract_features(backbone, data, image_size=96, preprocess=preprocess_input,
                                cache_dir=tmp_path).train.features
    assert features.shape == (64, 1280) and np.isfinite(features).all()
    # ImageNet features of different images differ; ReLU6 outputs are in [0, 6].
    assert features.std(axis=0).mean() > 0.05 and 0 <= features.min() and features.max() <= 6
    random = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False,
                                            weights=None, pooling="avg")
    assert not np.allclose(backbone.get_weights()[0], random.get_weights()[0])
