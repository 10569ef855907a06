"""Loading CIFAR-10 from local copies, refusing bad files, splits and tf.data pipelines."""

import io
import pickle
import tarfile
import warnings

import numpy as np
import pytest
from conftest import PER_BATCH, synthetic_batch, write_batches

from cifar_utils import data
from cifar_utils.data import (
    BATCH_FOLDER,
    CifarDataError,
    ModifiedDataWarning,
    UnsafePickleError,
    load_cifar10,
    make_dataset,
    stratified_subset,
    train_val_split,
)


def load_quietly(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModifiedDataWarning)
        return load_cifar10(*args, **kwargs)


# --------------------------------------------------------------------------- reading


def test_reads_official_layout_into_nhwc_uint8(cifar_dir):
    (x_train, y_train), (x_test, y_test) = load_quietly(cifar_dir)
    assert x_train.shape == (5 * PER_BATCH, 32, 32, 3) and x_train.dtype == np.uint8
    assert x_test.shape == (PER_BATCH, 32, 32, 3)
    assert y_train.shape == (5 * PER_BATCH,) and y_train.dtype == np.uint8
    assert np.bincount(y_test).tolist() == [2] * 10
    # Rows are channel-planar: the first 1024 values are red, then green, then blue.
    row = synthetic_batch(seed=0)[b"data"][0]
    assert np.array_equal(x_train[0, :, :, 0], row[:1024].reshape(32, 32))
    assert np.array_equal(x_train[0, :, :, 2], row[2048:].reshape(32, 32))
    assert np.array_equal(x_train[0, 5, 7], row[[5 * 32 + 7, 1024 + 5 * 32 + 7, 2048 + 5 * 32 + 7]])


def test_train_batches_keep_their_order(cifar_dir):
    (x_train, _), (x_test, _) = load_quietly(cifar_dir)
    second = synthetic_batch(seed=1)[b"data"][0]
    assert np.array_equal(x_train[PER_BATCH].transpose(2, 0, 1).reshape(-1), second)
    test_row = synthetic_batch(seed=5)[b"data"][3]
    assert np.array_equal(x_test[3].transpose(2, 0, 1).reshape(-1), test_row)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_reads_batches_pickled_by_python3(tmp_path, protocol):
    write_batches(tmp_path / BATCH_FOLDER, protocol=protocol)
    (x_train, y_train), _ = load_quietly(tmp_path)
    assert x_train.shape == (5 * PER_BATCH, 32, 32, 3)


def test_accepts_the_batch_folder_itself(cifar_dir):
    (x_train, _), _ = load_quietly(cifar_dir / BATCH_FOLDER)
    assert len(x_train) == 5 * PER_BATCH


def test_accepts_the_tar_gz_archive(cifar_dir, tmp_path):
    archive = tmp_path / "archive" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(cifar_dir / BATCH_FOLDER, arcname=BATCH_FOLDER)
    (from_tar, _), _ = load_quietly(archive)
    (from_parent, _), _ = load_quietly(archive.parent)
    (from_folder, _), _ = load_quietly(cifar_dir)
    assert np.array_equal(from_tar, from_folder) and np.array_equal(from_parent, from_folder)


def test_environment_variable_names_the_local_copy(cifar_dir, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(cifar_dir))
    (x_train, _), _ = load_quietly()
    assert len(x_train) == 5 * PER_BATCH


def test_without_local_copy_uses_keras_download(monkeypatch):
    import keras

    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    x = np.zeros((4, 32, 32, 3), np.uint8)
    y = np.array([[1], [2], [3], [4]], np.uint8)
    calls = []
    monkeypatch.setattr(keras.datasets.cifar10, "load_data",
                        lambda: calls.append(1) or ((x, y), (x, y)))
    ((x_train, y_train), _), provenance = load_cifar10(return_provenance=True)
    assert calls == [1]
    assert y_train.tolist() == [1, 2, 3, 4]  # flattened from Keras' (N, 1)
    assert provenance.official and "Keras" in provenance.describe()


# --------------------------------------------------------------------------- provenance


def test_modified_copy_warns_and_reports_every_md5(cifar_dir):
    with pytest.warns(ModifiedDataWarning, match="MODIFIED copy, 6 of 6 files differ"):
        _, provenance = load_cifar10(cifar_dir, return_provenance=True)
    assert not provenance.official
    assert set(provenance.md5) == {*data.TRAIN_FILES, data.TEST_FILE}
    expected = __import__("hashlib").md5((cifar_dir / BATCH_FOLDER / "test_batch").read_bytes())
    assert provenance.md5["test_batch"] == expected.hexdigest()
    assert str(cifar_dir) not in provenance.describe()  # no machine paths in notebooks
    assert provenance.to_dict()["modified_files"] == list(provenance.modified_files)


def test_official_checksums_load_silently(cifar_dir, monkeypatch):
    folder = cifar_dir / BATCH_FOLDER
    official = {name: data._md5((folder / name).read_bytes()) for name in data.OFFICIAL_MD5}
    monkeypatch.setattr(data, "OFFICIAL_MD5", official)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, provenance = load_cifar10(cifar_dir, return_provenance=True)
    assert provenance.official and provenance.modified_files == ()
    assert "official files" in provenance.describe()


def test_one_changed_file_is_named(cifar_dir, monkeypatch):
    folder = cifar_dir / BATCH_FOLDER
    official = {name: data._md5((folder / name).read_bytes()) for name in data.OFFICIAL_MD5}
    official["data_batch_3"] = "0" * 32
    monkeypatch.setattr(data, "OFFICIAL_MD5", official)
    with pytest.warns(ModifiedDataWarning, match=r"1 of 6 files differ .*\(data_batch_3\)"):
        load_cifar10(cifar_dir)


# --------------------------------------------------------------------------- bad input


def test_missing_directory_says_what_to_do(tmp_path):
    with pytest.raises(CifarDataError, match="does not exist.*CIFAR10_DIR"):
        load_cifar10(tmp_path / "nowhere")


def test_directory_without_data_says_what_it_expected(tmp_path):
    with pytest.raises(CifarDataError, match="holds neither cifar-10-batches-py/"):
        load_cifar10(tmp_path)


def test_missing_batch_file_is_named(cifar_dir):
    (cifar_dir / BATCH_FOLDER / "data_batch_4").unlink()
    with pytest.raises(CifarDataError, match="data_batch_4 is missing.*CIFAR10_DIR"):
        load_cifar10(cifar_dir)


def test_truncated_file_is_named_with_its_size(cifar_dir):
    path = cifar_dir / BATCH_FOLDER / "data_batch_2"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CifarDataError, match=r"data_batch_2: .*1,000 bytes.*truncated"):
        load_quietly(cifar_dir)


def test_truncated_archive_is_reported(cifar_dir, tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(cifar_dir / BATCH_FOLDER, arcname=BATCH_FOLDER)
    archive.write_bytes(archive.read_bytes()[:2000])
    with pytest.raises(CifarDataError, match="cifar-10-python.tar.gz: cannot be read"):
        load_cifar10(archive)


@pytest.mark.parametrize("batch, problem", [
    ({b"labels": [0]}, r"expected a dict with keys b'data' and b'labels'"),
    ([1, 2, 3], r"expected a dict .* found list"),
    ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, r"shape \(N, 3072\)"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, r"uint8 array"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, r"expected 2 integer labels"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"values 0..10"),
])
def test_malformed_batch_names_file_expectation_and_finding(cifar_dir, batch, problem):
    (cifar_dir / BATCH_FOLDER / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(CifarDataError, match=f"test_batch: .*{problem}"):
        load_quietly(cifar_dir)


class _RunsCode:
    """What an attacker would pickle: unpickling it calls a function of their choice."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_without_running_it(cifar_dir, tmp_path):
    marker = tmp_path / "pwned"
    batch = synthetic_batch(seed=0)
    batch[b"labels"] = _RunsCode(str(marker))
    (cifar_dir / BATCH_FOLDER / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"data_batch_1: refused to load `io.open`"):
        load_quietly(cifar_dir)
    assert not marker.exists()


@pytest.mark.parametrize("module, name", [("os", "system"), ("numpy", "load"),
                                          ("numpy.core.multiarray", "scalar")])
def test_only_array_reconstruction_is_admitted(module, name):
    with pytest.raises(UnsafePickleError, match=f"{module}.{name}"):
        data._CifarUnpickler(io.BytesIO(b"")).find_class(module, name)


def test_codecs_encode_is_limited_to_latin1():
    encode = data._CifarUnpickler(io.BytesIO(b"")).find_class("_codecs", "encode")
    assert encode("\xff", "latin1") == b"\xff"
    with pytest.raises(UnsafePickleError):
        encode("x", "rot13")


# --------------------------------------------------------------------------- splits


def test_train_val_split_is_stratified_disjoint_and_seeded():
    x = np.arange(1000)
    y = np.repeat(np.arange(10), 100)
    (x_tr, y_tr), (x_val, y_val) = train_val_split(x, y, val_size=200, seed=1)
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
    x_small, y_small = stratified_subset(x, y, 20, seed=3)
    assert np.bincount(y_small).tolist() == [2] * 10
    positions = [np.flatnonzero((x == img).all(axis=(1, 2, 3)))[0] for img in x_small]
    assert positions == sorted(positions)


# --------------------------------------------------------------------------- tf.data


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


def test_load_splits_gives_every_notebook_the_same_split(cifar_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModifiedDataWarning)
        splits = data.load_splits(cifar_dir, val_size=20, seed=1)
        again = data.load_splits(cifar_dir, val_size=20, seed=1)
        small = data.load_splits(cifar_dir, val_size=20, seed=1, train_size=40, test_size=10)
    assert len(splits.train[1]) == 80 and np.bincount(splits.val[1]).tolist() == [2] * 10
    assert np.array_equal(splits.val[0], again.val[0])
    assert splits.sizes() == "train 80 | validation 20 | test 20 images"
    assert np.bincount(small.train[1]).tolist() == [4] * 10 and len(small.test[1]) == 10
    assert not splits.provenance.official
