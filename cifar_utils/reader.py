"""The safe reader of local CIFAR-10 copies (the official "python version" files), which Keras
refuses unless they are the official archive. Unpickling an untrusted file can run code, so only
the NumPy and built-in objects of a CIFAR batch are admitted; each file's md5 is checked."""

from __future__ import annotations

import hashlib
import importlib
import io
import pickle
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DATA_DIR_ENV = "CIFAR10_DIR"  # environment variable naming a local copy of CIFAR-10
NUM_CLASSES = 10  # labels in a batch file run from 0 to 9
BATCH_FOLDER = "cifar-10-batches-py"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
OFFICIAL_MD5 = {  # as published with the dataset
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
# Copies known beyond their checksums: test_batch md5 -> how many of the first test images
# keep their official pixels, as the copy documents (the rest were recovered from a JPEG).
PARTLY_RECOVERED = {"c0a987180fb61cc3f12ec343f33aa608": 846}
_FIX_HINT = (
    "Download the 'CIFAR-10 python version' from https://www.cs.toronto.edu/~kriz/cifar.html "
    f"and point `data_dir=` or ${DATA_DIR_ENV} at the folder holding `{BATCH_FOLDER}/` "
    f"or `{ARCHIVE_NAME}` (DEVELOPING.md, section 'Offline use'); or unset ${DATA_DIR_ENV} to let "
    "Keras download it.")


class CifarDataError(ValueError):
    """A CIFAR-10 file is missing, truncated or not in the official format."""


class UnsafePickleError(CifarDataError, pickle.UnpicklingError):
    """A batch file asked to load an object that a CIFAR batch never contains."""


class ModifiedDataWarning(UserWarning):
    """The local CIFAR-10 files differ from the official ones (checksum mismatch)."""


@dataclass(frozen=True)
class DataProvenance:
    """Where the arrays came from. `md5` maps file name to checksum; `official`: every md5
    matches the published one (or Keras downloaded and verified the archive itself)."""
    source: str
    official: bool
    md5: dict = field(default_factory=dict)
    modified_files: tuple = ()

    def describe(self) -> str:
        """One line for a notebook: the source, and official or modified. No machine paths."""
        if self.official:
            return f"CIFAR-10 from {self.source}: official files (checksums match)."
        return (f"CIFAR-10 from {self.source}: MODIFIED copy, {len(self.modified_files)} of "
                f"{len(self.md5)} files differ from the official checksums "
                f"({', '.join(self.modified_files)}). Accuracies are not comparable with "
                "numbers measured on the official dataset." + (
                    f" Its first {self.original_test_images:,} test images keep their official "
                    "pixels, as the copy documents." if self.original_test_images else ""))

    @property
    def original_test_images(self) -> int | None:
        """How many of the first test images keep their official pixels: all of the official
        files, as many as a known partly recovered copy documents, None for another copy."""
        return 10_000 if self.official else PARTLY_RECOVERED.get(self.md5.get(TEST_FILE))

    def to_dict(self) -> dict:
        """A JSON-ready record, for results files."""
        return {"source": self.source, "official": self.official, "md5": dict(self.md5),
                "modified_files": list(self.modified_files),
                "original_test_images": self.original_test_images}


def _latin1_encode(text, encoding):
    """Python 3 protocol-2 pickles store bytes as `_codecs.encode(text, "latin1")`."""
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refused `_codecs.encode` with encoding {encoding!r}")
    return text.encode(encoding)


_ALLOWED = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
            ("_codecs", "encode"): _latin1_encode}
# NumPy helpers that rebuild a pickled array, as (submodule, name) of numpy.core or
# numpy._core: `_reconstruct` (Python 2 and protocols 2-4) and `_frombuffer` (protocol 5).
_NUMPY_HELPERS = {("multiarray", "_reconstruct"), ("numeric", "_frombuffer")}


class _CifarUnpickler(pickle.Unpickler):
    """Admits only NumPy array reconstruction and plain containers (which need no lookup):
    just what a batch written by Python 2 (the official files) or Python 3 can contain."""

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[module, name]
        package, _, submodule = module.rpartition(".")
        if package in ("numpy.core", "numpy._core") and (submodule, name) in _NUMPY_HELPERS:
            try:  # the helper from NumPy 2's `numpy._core`, or NumPy 1's `numpy.core`
                return getattr(importlib.import_module(f"numpy._core.{submodule}"), name)
            except ImportError:  # pragma: no cover - NumPy 1.x
                return getattr(importlib.import_module(f"numpy.core.{submodule}"), name)
        raise UnsafePickleError(
            f"refused to load `{module}.{name}`: a CIFAR-10 batch only holds NumPy arrays, "
            "lists, bytes and numbers, so this file is not a genuine batch and may run code "
            "when unpickled. Do not use it. " + _FIX_HINT)


def _parse_batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Turn the bytes of one batch file into (images NHWC uint8, labels uint8)."""
    try:
        batch = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except UnsafePickleError as err:
        raise UnsafePickleError(f"{name}: {err}") from None
    except Exception as err:  # EOFError, UnpicklingError, ValueError, ...
        raise CifarDataError(
            f"{name}: cannot be read as a CIFAR-10 pickle ({type(err).__name__}: {err}); "
            f"the file is {len(raw):,} bytes, a complete batch is about 30.7 MB. It is "
            "probably truncated or corrupt. " + _FIX_HINT) from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        found = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise CifarDataError(f"{name}: expected a dict with keys b'data' and b'labels', "
                             f"found {found}. " + _FIX_HINT)
    data, labels = batch[b"data"], np.asarray(batch[b"labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 32 * 32 * 3:
        found = f"{type(data).__name__} {getattr(data, 'dtype', '')} {getattr(data, 'shape', '')}"
        raise CifarDataError(f"{name}: expected b'data' to be a uint8 array of shape (N, 3072), "
                             f"found {found.strip()}. " + _FIX_HINT)
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer) \
            or (labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES)):
        values = (f" with values {labels.min()}..{labels.max()}"
                  if labels.size and np.issubdtype(labels.dtype, np.number) else "")
        raise CifarDataError(f"{name}: expected {len(data)} integer labels in 0..9, found "
                             f"{labels.dtype} array of shape {labels.shape}{values}. " + _FIX_HINT)
    # Rows are channel-planar (1024 red, 1024 green, 1024 blue): reshape to NHWC.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.uint8)


def _read_folder(folder: Path) -> dict[str, bytes]:
    files = {}
    for name in (*TRAIN_FILES, TEST_FILE):
        if not (folder / name).is_file():
            raise CifarDataError(f"{BATCH_FOLDER}/{name} is missing: a local CIFAR-10 copy needs "
                                 f"{', '.join(TRAIN_FILES)} and {TEST_FILE} in one folder. "
                                 + _FIX_HINT)
        files[name] = (folder / name).read_bytes()
    return files


def _read_archive(archive: Path) -> dict[str, bytes]:
    files = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for name in (*TRAIN_FILES, TEST_FILE):
                try:
                    member = tar.getmember(f"{BATCH_FOLDER}/{name}")
                except KeyError:
                    raise CifarDataError(f"{archive.name}: has no member {BATCH_FOLDER}/{name}; "
                                         "expected the official archive layout. "
                                         + _FIX_HINT) from None
                files[name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise CifarDataError(f"{archive.name}: cannot be read as a .tar.gz archive ({err}); it "
                             "is probably truncated or corrupt. " + _FIX_HINT) from None
    return files


def _md5(raw: bytes) -> str:
    return hashlib.md5(raw).hexdigest()


def read_local_copy(data_dir) -> tuple[tuple, tuple, DataProvenance]:
    """`(x_train, y_train), (x_test, y_test), provenance` of a local copy in `data_dir` (a folder
    holding `cifar-10-batches-py/`, that folder, or the `.tar.gz`); a `CifarDataError` names the
    file and the fix when anything is missing, truncated, malformed or unsafe."""
    data_dir = Path(data_dir).expanduser()
    folders = [f for f in (data_dir / BATCH_FOLDER, data_dir) if (f / TEST_FILE).is_file()]
    archives = [a for a in (data_dir / ARCHIVE_NAME, data_dir)
                if a.is_file() and a.name.endswith((".tar.gz", ".tgz"))]
    if folders:
        files, source = _read_folder(folders[0]), f"a local folder ({BATCH_FOLDER})"
    elif archives:
        files, source = _read_archive(archives[0]), f"a local archive ({archives[0].name})"
    else:
        problem = ("does not exist" if not data_dir.exists() else
                   f"holds neither {BATCH_FOLDER}/ with the batch files nor {ARCHIVE_NAME}")
        raise CifarDataError(f"local CIFAR-10 copy {str(data_dir)!r} {problem}. " + _FIX_HINT)
    md5 = {name: _md5(raw) for name, raw in files.items()}
    modified = tuple(name for name, digest in md5.items() if digest != OFFICIAL_MD5[name])
    provenance = DataProvenance(source=source, official=not modified, md5=md5,
                                modified_files=modified)
    train = [_parse_batch(files[name], name) for name in TRAIN_FILES]
    x_test, y_test = _parse_batch(files[TEST_FILE], TEST_FILE)
    x_train, y_train = (np.concatenate(part) for part in zip(*train, strict=True))
    return (x_train, y_train), (x_test, y_test), provenance
