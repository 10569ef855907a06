"""Loading CIFAR-10, splitting it, and feeding it to Keras through `tf.data`.

Two ways to get the data:

* **Download** (default): `keras.datasets.cifar10.load_data()` fetches the official
  archive once and caches it under `~/.keras/datasets`.
* **Local copy**: pass `data_dir=` or set the environment variable `CIFAR10_DIR` to a
  folder holding the official "python version" files (`cifar-10-batches-py/`) or the
  `cifar-10-python.tar.gz` archive. Useful offline, in a classroom or behind a firewall.

Keras refuses archives whose checksum differs from the official one, so local copies
are read by this module's own reader. It never runs arbitrary pickle code: only the
few NumPy and built-in objects a CIFAR batch is made of may be loaded. Each file's md5
is compared with the official one, so a notebook can say whether its data is the
official dataset or a modified copy.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DATA_DIR_ENV = "CIFAR10_DIR"
"""Environment variable naming a local copy of CIFAR-10."""

CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
NUM_CLASSES = len(CLASS_NAMES)

BATCH_FOLDER = "cifar-10-batches-py"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"

OFFICIAL_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
"""md5 of each official file, as published with the dataset."""

_FIX_HINT = (
    "Download the 'CIFAR-10 python version' from https://www.cs.toronto.edu/~kriz/cifar.html "
    f"and point `data_dir=` or ${DATA_DIR_ENV} at the folder holding `{BATCH_FOLDER}/` "
    f"or `{ARCHIVE_NAME}`; or unset ${DATA_DIR_ENV} to let Keras download it."
)


class CifarDataError(ValueError):
    """A CIFAR-10 file is missing, truncated or not in the official format."""


class UnsafePickleError(CifarDataError, pickle.UnpicklingError):
    """A batch file asked to load an object that a CIFAR batch never contains."""


class ModifiedDataWarning(UserWarning):
    """The local CIFAR-10 files differ from the official ones (checksum mismatch)."""


@dataclass(frozen=True)
class DataProvenance:
    """Where the arrays came from and whether they match the official files.

    `official` is True when every file's md5 matches the published one (or when Keras
    downloaded and verified the archive itself); `md5` maps file name to checksum.
    """

    source: str
    official: bool
    md5: dict = field(default_factory=dict)
    modified_files: tuple = ()

    def describe(self) -> str:
        """One line for a notebook: the source, and official or modified. No machine paths."""
        if self.official:
            return f"CIFAR-10 from {self.source}: official files (checksums match)."
        return (
            f"CIFAR-10 from {self.source}: MODIFIED copy, {len(self.modified_files)} of "
            f"{len(self.md5)} files differ from the official checksums "
            f"({', '.join(self.modified_files)}). Accuracies are not comparable with "
            "numbers measured on the official dataset."
        )

    def to_dict(self) -> dict:
        """A JSON-ready record, for results files."""
        return {
            "source": self.source,
            "official": self.official,
            "md5": dict(self.md5),
            "modified_files": list(self.modified_files),
        }


# --------------------------------------------------------------------------- reading


def _numpy_internal(module, name):
    """A NumPy pickle helper, whichever of NumPy 1 (`numpy.core`) or 2 (`numpy._core`) runs."""
    import importlib

    try:
        return getattr(importlib.import_module(f"numpy._core.{module}"), name)
    except ImportError:  # pragma: no cover - NumPy 1.x
        return getattr(importlib.import_module(f"numpy.core.{module}"), name)


def _latin1_encode(text, encoding):
    """Python 3 protocol-2 pickles store bytes as `_codecs.encode(text, "latin1")`."""
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refused `_codecs.encode` with encoding {encoding!r}")
    return text.encode(encoding)


# NumPy helpers that rebuild a pickled array, as (submodule, name) of numpy.core or
# numpy._core: `_reconstruct` (Python 2 and protocols 2-4) and `_frombuffer` (protocol 5).
_NUMPY_HELPERS = {("multiarray", "_reconstruct"), ("numeric", "_frombuffer")}


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that only admits NumPy array reconstruction and plain containers.

    Plain containers (dict, list, bytes, int) need no lookup; any other object a
    pickle names goes through `find_class`, which allows just what a CIFAR batch
    written by Python 2 (the official files) or Python 3 can contain.
    """

    def find_class(self, module, name):
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        package, _, submodule = module.rpartition(".")
        if package in ("numpy.core", "numpy._core") and (submodule, name) in _NUMPY_HELPERS:
            return _numpy_internal(submodule, name)
        raise UnsafePickleError(
            f"refused to load `{module}.{name}`: a CIFAR-10 batch only holds NumPy "
            "arrays, lists, bytes and numbers, so this file is not a genuine batch "
            "and may run code when unpickled. Do not use it. " + _FIX_HINT
        )


def _unpickle(raw: bytes, name: str):
    try:
        return _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except UnsafePickleError as err:
        raise UnsafePickleError(f"{name}: {err}") from None
    except Exception as err:  # EOFError, UnpicklingError, ValueError, ...
        raise CifarDataError(
            f"{name}: cannot be read as a CIFAR-10 pickle ({type(err).__name__}: {err}); "
            f"the file is {len(raw):,} bytes, a complete batch is about 30.7 MB. It is "
            "probably truncated or corrupt. " + _FIX_HINT
        ) from None


def _parse_batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Turn the bytes of one batch file into (images NHWC uint8, labels uint8)."""
    batch = _unpickle(raw, name)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        found = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise CifarDataError(
            f"{name}: expected a dict with keys b'data' and b'labels', found {found}. "
            + _FIX_HINT
        )
    data, labels = batch[b"data"], np.asarray(batch[b"labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 32 * 32 * 3:
        found = f"{type(data).__name__} {getattr(data, 'dtype', '')} {getattr(data, 'shape', '')}"
        raise CifarDataError(
            f"{name}: expected b'data' to be a uint8 array of shape (N, 3072), found "
            f"{found.strip()}. " + _FIX_HINT
        )
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer) \
            or (labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES)):
        raise CifarDataError(
            f"{name}: expected {len(data)} integer labels in 0..9, found "
            f"{labels.dtype} array of shape {labels.shape}"
            + (f" with values {labels.min()}..{labels.max()}" if labels.size
               and np.issubdtype(labels.dtype, np.number) else "")
            + ". " + _FIX_HINT
        )
    # Rows are channel-planar (1024 red, 1024 green, 1024 blue): reshape to NHWC.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.uint8)


def _read_folder(folder: Path) -> dict[str, bytes]:
    files = {}
    for name in (*TRAIN_FILES, TEST_FILE):
        path = folder / name
        if not path.is_file():
            raise CifarDataError(
                f"{BATCH_FOLDER}/{name} is missing: a local CIFAR-10 copy needs "
                f"{', '.join(TRAIN_FILES)} and {TEST_FILE} in one folder. " + _FIX_HINT
            )
        files[name] = path.read_bytes()
    return files


def _read_archive(archive: Path) -> dict[str, bytes]:
    files = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for name in (*TRAIN_FILES, TEST_FILE):
                try:
                    member = tar.getmember(f"{BATCH_FOLDER}/{name}")
                except KeyError:
                    raise CifarDataError(
                        f"{archive.name}: has no member {BATCH_FOLDER}/{name}; expected "
                        "the official archive layout. " + _FIX_HINT
                    ) from None
                files[name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise CifarDataError(
            f"{archive.name}: cannot be read as a .tar.gz archive ({err}); it is probably "
            "truncated or corrupt. " + _FIX_HINT
        ) from None
    return files


def _resolve_local(data_dir: Path) -> tuple[str, Path]:
    """Find the batch folder or archive inside (or at) `data_dir`."""
    data_dir = Path(data_dir).expanduser()
    candidates = [
        ("folder", data_dir / BATCH_FOLDER),
        ("folder", data_dir),
        ("archive", data_dir / ARCHIVE_NAME),
        ("archive", data_dir),
    ]
    for kind, path in candidates:
        if kind == "folder" and (path / TEST_FILE).is_file():
            return kind, path
        if kind == "archive" and path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
            return kind, path
    if not data_dir.exists():
        problem = "does not exist"
    else:
        problem = f"holds neither {BATCH_FOLDER}/ with the batch files nor {ARCHIVE_NAME}"
    raise CifarDataError(f"local CIFAR-10 copy {str(data_dir)!r} {problem}. " + _FIX_HINT)


def _md5(raw: bytes) -> str:
    return hashlib.md5(raw).hexdigest()


def _provenance(source: str, files: dict[str, bytes]) -> DataProvenance:
    md5 = {name: _md5(raw) for name, raw in files.items()}
    modified = tuple(name for name, digest in md5.items() if digest != OFFICIAL_MD5[name])
    return DataProvenance(source=source, official=not modified, md5=md5,
                          modified_files=modified)


def _load_local(data_dir) -> tuple[tuple, tuple, DataProvenance]:
    kind, path = _resolve_local(data_dir)
    if kind == "folder":
        files, source = _read_folder(path), f"a local folder ({BATCH_FOLDER})"
    else:
        files, source = _read_archive(path), f"a local archive ({path.name})"
    provenance = _provenance(source, files)
    train = [_parse_batch(files[name], name) for name in TRAIN_FILES]
    x_test, y_test = _parse_batch(files[TEST_FILE], TEST_FILE)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return (x_train, y_train), (x_test, y_test), provenance


def load_cifar10(data_dir=None, *, return_provenance=False):
    """Load CIFAR-10 as uint8 arrays: `(x_train, y_train), (x_test, y_test)`.

    Images have shape (N, 32, 32, 3); labels have shape (N,) with values 0..9 (Keras
    returns (N, 1); flat labels are easier to index, count and stratify).

    Args:
        data_dir: a local copy (folder holding `cifar-10-batches-py/`, that folder
            itself, or the `.tar.gz` archive). Defaults to `$CIFAR10_DIR`; when neither
            is given, Keras downloads and caches the official archive.
        return_provenance: also return a `DataProvenance` saying where the data came
            from and whether it matches the official checksums.

    A local copy whose checksums differ from the official ones loads with a
    `ModifiedDataWarning`, because its accuracies are not comparable with published ones.
    """
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV) or None
    if data_dir is None:
        import keras  # imported here so that `import cifar_utils` stays light

        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
        train = (x_train, y_train.reshape(-1).astype(np.uint8))
        test = (x_test, y_test.reshape(-1).astype(np.uint8))
        provenance = DataProvenance(source="the Keras download (sha256 verified by Keras)",
                                    official=True)
    else:
        train, test, provenance = _load_local(data_dir)
        if not provenance.official:
            warnings.warn(provenance.describe(), ModifiedDataWarning, stacklevel=2)
    if return_provenance:
        return (train, test), provenance
    return train, test


# --------------------------------------------------------------------------- splits


def _stratified_indices(y, per_class: int, rng: np.random.Generator) -> np.ndarray:
    picks = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        if per_class > len(members):
            raise ValueError(
                f"asked for {per_class} examples of class {label}, but only "
                f"{len(members)} exist; ask for fewer."
            )
        picks.append(rng.choice(members, size=per_class, replace=False))
    return np.concatenate(picks)


def train_val_split(x, y, val_size=5000, seed=42):
    """Split off a stratified validation set: `(x_train, y_train), (x_val, y_val)`.

    Every class gets `val_size // num_classes` validation examples, so accuracy on it
    is not skewed by class balance. The same seed always gives the same split, which
    is what lets every notebook of the series compare models on identical data.
    """
    y = np.asarray(y)
    classes = np.unique(y)
    if val_size % len(classes):
        raise ValueError(f"val_size={val_size} must be a multiple of the {len(classes)} classes.")
    rng = np.random.default_rng(seed)
    val_idx = np.sort(_stratified_indices(y, val_size // len(classes), rng))
    train_mask = np.ones(len(y), dtype=bool)
    train_mask[val_idx] = False
    return (x[train_mask], y[train_mask]), (x[val_idx], y[val_idx])


def stratified_subset(x, y, size, seed=0):
    """A class-balanced random subset of `size` examples (for quick runs).

    The subset keeps the original order of the arrays, so it is reproducible and
    independent of how it is later shuffled.
    """
    y = np.asarray(y)
    classes = np.unique(y)
    if size % len(classes):
        raise ValueError(f"size={size} must be a multiple of the {len(classes)} classes.")
    idx = np.sort(_stratified_indices(y, size // len(classes), np.random.default_rng(seed)))
    return x[idx], y[idx]


@dataclass(frozen=True)
class CifarSplits:
    """The three splits every notebook uses, each an `(images, labels)` pair, and provenance."""

    train: tuple
    val: tuple
    test: tuple
    provenance: DataProvenance

    def sizes(self) -> str:
        """One line with the number of images in each split."""
        return (f"train {len(self.train[1]):,} | validation {len(self.val[1]):,} | "
                f"test {len(self.test[1]):,} images")


def load_splits(data_dir=None, *, val_size=5000, seed=42, train_size=None, test_size=None):
    """Load CIFAR-10 and split it the same way in every notebook.

    The 50,000 training images become `train` and a stratified `val` of `val_size`;
    settings are chosen on `val`, and `test` is only used for the final numbers.
    `train_size` / `test_size` take stratified subsets (quick runs); None keeps all.
    """
    (train, test), provenance = load_cifar10(data_dir, return_provenance=True)
    train, val = train_val_split(*train, val_size=val_size, seed=seed)
    if train_size is not None:
        train = stratified_subset(*train, train_size, seed=seed)
    if test_size is not None:
        test = stratified_subset(*test, test_size, seed=seed)
    return CifarSplits(train=train, val=val, test=test, provenance=provenance)


# --------------------------------------------------------------------------- tf.data


def make_dataset(x, y=None, *, batch_size=64, image_size=None, preprocess=None,
                 augment=None, shuffle=False, seed=None):
    """A batched `tf.data.Dataset` of `(images, labels)` (or images alone if `y` is None).

    The uint8 arrays stay in memory at 32x32; each batch is, in order, augmented
    (`augment`, a Keras layer or model, applied at 32x32 where it is cheap), resized to
    `image_size` (bilinear), passed through `preprocess` (e.g. `scale_01` or
    `mobilenet_preprocess`) and prefetched. Upsampling on the fly is what makes 160x160
    inputs possible at all: 50,000 images at 160x160 would be 15 GB as float32.
    """
    import tensorflow as tf

    data = (x,) if y is None else (x, np.asarray(y))
    ds = tf.data.Dataset.from_tensor_slices(data)
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    def transform(images, *labels):
        images = tf.cast(images, tf.float32)
        if augment is not None:
            images = augment(images, training=True)
        if image_size is not None and image_size != images.shape[1]:
            images = tf.image.resize(images, (image_size, image_size))
        if preprocess is not None:
            images = preprocess(images)
        return (images, *labels) if labels else images

    ds = ds.map(transform, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
