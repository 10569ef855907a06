"""Loading CIFAR-10 (download or local copy) and the splits every notebook uses."""

import warnings

import numpy as np
import pytest

from cifar_utils import data
from cifar_utils.data import (
    CifarData,
    CifarDataError,
    LabelledImages,
    ModifiedDataWarning,
    load_cifar10,
    stratified_subset,
    train_val_split,
)


def test_without_local_copy_uses_keras_download(monkeypatch):
    import keras

    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    x = np.zeros((4, 32, 32, 3), np.uint8)
    y = np.array([[1], [2], [3], [4]], np.uint8)
    calls = []
    monkeypatch.setattr(keras.datasets.cifar10, "load_data",
                        lambda: calls.append(1) or ((x, y), (x, y)))
    (train, _), provenance = load_cifar10(return_provenance=True)
    assert calls == [1] and isinstance(train, LabelledImages)
    x_train, y_train = train
    assert y_train.tolist() == [1, 2, 3, 4]  # flattened from Keras' (N, 1)
    assert provenance.official and "Keras" in provenance.describe()


def test_a_failed_download_names_the_local_copy_variable_and_layout(monkeypatch):
    import keras

    def offline():
        raise Exception("URL fetch failure on https://www.cs.toronto.edu/~kriz/"
                        "cifar-10-python.tar.gz: None -- [Errno -2] Name or service not known")

    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    with pytest.raises(CifarDataError) as error:
        data.load_splits()
    message = str(error.value)
    assert "could not be downloaded" in message and "Name or service not known" in message
    assert "$CIFAR10_DIR" in message and "cifar-10-batches-py/" in message
    assert "DEVELOPING.md, section 'Offline use'" in message
    assert error.value.__cause__ is None and error.value.__suppress_context__  # one error


# --------------------------------------------------------------------------- splits


def test_train_val_split_is_stratified_disjoint_and_seeded():
    x = np.arange(1000)
    y = np.repeat(np.arange(10), 100)
    train, val = train_val_split(x, y, val_size=200, seed=1)
    assert isinstance(train, LabelledImages) and isinstance(val, LabelledImages)
    (x_tr, y_tr), (x_val, y_val) = train, val
    assert np.array_equal(y[x_tr], y_tr)
    assert np.bincount(y_val).tolist() == [20] * 10
    assert len(x_tr) == 800 and not set(x_tr) & set(x_val)
    assert np.array_equal(y[x_val], y_val)
    (_, _), (again, _) = train_val_split(x, y, val_size=200, seed=1)
    (_, _), (other, _) = train_val_split(x, y, val_size=200, seed=2)
    assert np.array_equal(again, x_val) and not np.array_equal(other, x_val)


def test_split_rejects_sizes_that_cannot_be_stratified():
    y = np.repeat(np.arange(10), 3)
    with pytest.raises(ValueError, match="multiple of the 10 classes"):
        train_val_split(np.arange(30), y, val_size=15)
    with pytest.raises(ValueError, match="only 3 exist"):
        train_val_split(np.arange(30), y, val_size=40)


def test_stratified_subset_is_balanced_and_ordered(images):
    x, y = images
    subset = stratified_subset(x, y, 20, seed=3)
    assert isinstance(subset, LabelledImages)
    x_small, y_small = subset
    assert np.bincount(y_small).tolist() == [2] * 10
    positions = [np.flatnonzero((x == img).all(axis=(1, 2, 3)))[0] for img in x_small]
    assert positions == sorted(positions)


def test_load_splits_gives_every_notebook_the_same_split(cifar_dir, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the printed provenance replaces the warning
        splits = data.load_splits(cifar_dir, val_size=20, seed=1)
        again = data.load_splits(cifar_dir, val_size=20, seed=1)
        small = data.load_splits(cifar_dir, val_size=20, seed=1, train_size=40, test_size=10)
    assert len(splits.train.labels) == 80 and np.bincount(splits.val.labels).tolist() == [2] * 10
    assert np.array_equal(splits.val.images, again.val.images)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("CIFAR-10 from a local folder") and "MODIFIED" in printed[0]
    assert printed[1] == "train 80 | validation 20 | test 20 images"
    assert np.bincount(small.train.labels).tolist() == [4] * 10 and len(small.test.labels) == 10
    assert not splits.provenance.official


def test_splits_have_named_parts_and_still_unpack(cifar_dir):
    splits = data.load_splits(cifar_dir, val_size=20, seed=1)
    assert isinstance(splits, CifarData)
    for split in (splits.train, splits.val, splits.test):
        assert isinstance(split, LabelledImages)
        images, labels = split
        assert images is split.images and labels is split.labels
        assert images.shape[1:] == (32, 32, 3) and len(images) == len(labels)


def test_quiet_load_splits_still_warns_about_a_modified_copy(cifar_dir):
    with pytest.warns(ModifiedDataWarning):
        data.load_splits(cifar_dir, val_size=20, seed=1, verbose=False)
