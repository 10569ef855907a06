"""Loading CIFAR-10 and splitting it the same way in every notebook.

Two ways to get the data:

* **Download** (default): `keras.datasets.cifar10.load_data()` fetches the official
  archive once and caches it under `~/.keras/datasets`.
* **Local copy**: pass `data_dir=` or set the environment variable `CIFAR10_DIR` to a
  folder holding the official "python version" files (`cifar-10-batches-py/`) or the
  `cifar-10-python.tar.gz` archive. Useful offline, in a classroom or behind a firewall.
  It is read by the safe reader in `cifar_utils.reader`.

Notebooks call `load_splits`, which returns the three splits with named parts:
`data.train.images`, `data.val.labels`, `data.test` ... Each split still unpacks as a
pair, `x, y = data.train`, for code written against `load_cifar10`'s tuples.

Advanced: `load_cifar10`, `train_val_split` and `stratified_subset` are the pieces
`load_splits` is made of.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .reader import (
    DATA_DIR_ENV,
    CifarDataError,
    DataProvenance,
    ModifiedDataWarning,
    read_local_copy,
)

CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
NUM_CLASSES = len(CLASS_NAMES)

class Split(NamedTuple):
    """Images (uint8, N x 32 x 32 x 3) and their labels (uint8, N), in the same order."""

    images: np.ndarray
    labels: np.ndarray


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
    A failed download raises `CifarDataError` saying how to use a local copy instead.
    """
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV) or None
    if data_dir is None:
        train, test = _download()
        provenance = DataProvenance(source="the Keras download (sha256 verified by Keras)",
                                    official=True)
    else:
        train, test, provenance = read_local_copy(data_dir)
        if not provenance.official:
            warnings.warn(provenance.describe(), ModifiedDataWarning, stacklevel=2)
    train, test = Split(*train), Split(*test)
    if return_provenance:
        return (train, test), provenance
    return train, test


def _download():
    import keras  # imported here so that `import cifar_utils` stays light

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as err:  # Keras raises a bare Exception when the download fails
        raise CifarDataError(
            f"CIFAR-10 could not be downloaded ({type(err).__name__}: {err}). Offline, or "
            f"behind a firewall, set ${DATA_DIR_ENV} to a local copy: a folder holding "
            "cifar-10-batches-py/ (data_batch_1 ... data_batch_5, test_batch) or "
            "cifar-10-python.tar.gz, the official 'python version' from "
            "https://www.cs.toronto.edu/~kriz/cifar.html. See the README, section "
            "'Offline use'."
        ) from None
    return ((x_train, y_train.reshape(-1).astype(np.uint8)),
            (x_test, y_test.reshape(-1).astype(np.uint8)))


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
    """Split off a stratified validation set: `Split(train), Split(val)`.

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
    return Split(x[train_mask], y[train_mask]), Split(x[val_idx], y[val_idx])


def stratified_subset(x, y, size, seed=0):
    """A class-balanced random subset of `size` examples, as a `Split` (for quick runs).

    The subset keeps the original order of the arrays, so it is reproducible and
    independent of how it is later shuffled.
    """
    y = np.asarray(y)
    classes = np.unique(y)
    if size % len(classes):
        raise ValueError(f"size={size} must be a multiple of the {len(classes)} classes.")
    idx = np.sort(_stratified_indices(y, size // len(classes), np.random.default_rng(seed)))
    return Split(x[idx], y[idx])


@dataclass(frozen=True)
class CifarSplits:
    """The three splits every notebook uses, each a `Split`, and where the data came from."""

    train: Split
    val: Split
    test: Split
    provenance: DataProvenance

    def describe(self) -> str:
        """Two lines: the data's provenance and the number of images in each split."""
        return (f"{self.provenance.describe()}\n"
                f"train {len(self.train.labels):,} | validation {len(self.val.labels):,} | "
                f"test {len(self.test.labels):,} images")


def load_splits(data_dir=None, *, val_size=5000, seed=42, train_size=None, test_size=None,
                verbose=True):
    """Load CIFAR-10 and split it the same way in every notebook.

    The 50,000 training images become `train` and a stratified `val` of `val_size`;
    settings are chosen on `val`, and `test` is only used for the final numbers.
    `train_size` / `test_size` take stratified subsets (quick runs); None keeps all.
    With `verbose`, prints `describe()`: where the data came from (official or a
    modified copy) and the split sizes; that line then replaces `load_cifar10`'s
    `ModifiedDataWarning`, which would only repeat it.
    """
    with warnings.catch_warnings():
        if verbose:
            warnings.simplefilter("ignore", ModifiedDataWarning)
        (train, test), provenance = load_cifar10(data_dir, return_provenance=True)
    train, val = train_val_split(*train, val_size=val_size, seed=seed)
    if train_size is not None:
        train = stratified_subset(*train, train_size, seed=seed)
    if test_size is not None:
        test = stratified_subset(*test, test_size, seed=seed)
    splits = CifarSplits(train=train, val=val, test=test, provenance=provenance)
    if verbose:
        print(splits.describe())
    return splits
