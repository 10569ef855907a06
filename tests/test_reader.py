"""The safe reader of local CIFAR-10 copies: layouts, provenance, and refusing bad files."""

import io
import pickle
import tarfile
import warnings

import numpy as np
import pytest
from conftest import PER_BATCH, synthetic_batch, write_batches

from cifar_utils import reader
from cifar_utils.data import load_cifar10
from cifar_utils.reader import (
    BATCH_FOLDER,
    CifarDataError,
    ModifiedDataWarning,
    UnsafePickleError,
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


# --------------------------------------------------------------------------- provenance


def test_modified_copy_warns_and_reports_every_md5(cifar_dir):
    with pytest.warns(ModifiedDataWarning, match="MODIFIED copy, 6 of 6 files differ"):
        _, provenance = load_cifar10(cifar_dir, return_provenance=True)
    assert not provenance.official
    assert set(provenance.md5) == {*reader.TRAIN_FILES, reader.TEST_FILE}
    expected = __import__("hashlib").md5((cifar_dir / BATCH_FOLDER / "test_batch").read_bytes())
    assert provenance.md5["test_batch"] == expected.hexdigest()
    assert str(cifar_dir) not in provenance.describe()  # no machine paths in notebooks
    assert provenance.to_dict()["modified_files"] == list(provenance.modified_files)


def test_official_checksums_load_silently(cifar_dir, monkeypatch):
    folder = cifar_dir / BATCH_FOLDER
    official = {name: reader._md5((folder / name).read_bytes()) for name in reader.OFFICIAL_MD5}
    monkeypatch.setattr(reader, "OFFICIAL_MD5", official)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, provenance = load_cifar10(cifar_dir, return_provenance=True)
    assert provenance.official and provenance.modified_files == ()
    assert "official files" in provenance.describe()


def test_which_test_images_keep_official_pixels(cifar_dir, monkeypatch):
    """Official files: all; a copy whose recovery is documented: its count; another: unknown."""
    with pytest.warns(ModifiedDataWarning):
        _, unknown = load_cifar10(cifar_dir, return_provenance=True)
    assert unknown.original_test_images is None and "keep their official" not in unknown.describe()
    monkeypatch.setitem(reader.PARTLY_RECOVERED, unknown.md5["test_batch"], 12)
    with pytest.warns(ModifiedDataWarning):
        _, known = load_cifar10(cifar_dir, return_provenance=True)
    assert known.original_test_images == 12 and known.to_dict()["original_test_images"] == 12
    assert "first 12 test images keep their official pixels" in known.describe()
    assert reader.DataProvenance("Keras", official=True).original_test_images == 10_000


def test_one_changed_file_is_named(cifar_dir, monkeypatch):
    folder = cifar_dir / BATCH_FOLDER
    official = {name: reader._md5((folder / name).read_bytes()) for name in reader.OFFICIAL_MD5}
    official["data_batch_3"] = "0" * 32
    monkeypatch.setattr(reader, "OFFICIAL_MD5", official)
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
        reader._CifarUnpickler(io.BytesIO(b"")).find_class(module, name)


def test_codecs_encode_is_limited_to_latin1():
    encode = reader._CifarUnpickler(io.BytesIO(b"")).find_class("_codecs", "encode")
    assert encode("\xff", "latin1") == b"\xff"
    with pytest.raises(UnsafePickleError):
        encode("x", "rot13")
