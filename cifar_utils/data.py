"""Loading CIFAR-10 (downloaded by Keras, or a local copy) and splitting it the same way in
every notebook: `load_splits` gives three `LabelledImages` with named parts
(`data.train.images`, `data.val.labels`, ...) that still unpack as `x, y = data.train`."""

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

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")
NUM_CLASSES = len(CLASS_NAMES)


class LabelledImages(NamedTuple):
    """Images (uint8, N x 32 x 32 x 3) and their labels (uint8, N), in the same order."""
    images: np.ndarray
    labels: np.ndarray


def load_cifar10(data_dir=None, *, return_provenance=False):
    """CIFAR-10 as uint8 `LabelledImages` `(train, test)`, labels flat (N,) unlike Keras' (N, 1).

    `data_dir` (default `$CIFAR10_DIR`) is a local copy (`reader.read_local_copy`); without one,
    Keras downloads the archive. A modified copy warns (`ModifiedDataWarning`)."""
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV) or None
    if data_dir is None:
        import keras  # imported here so that `import cifar_utils` stays light
        try:
            (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
        except Exception as err:  # Keras raises a bare Exception when the download fails
            raise CifarDataError(
                f"CIFAR-10 could not be downloaded ({type(err).__name__}: {err}). Offline, or "
                f"behind a firewall, set ${DATA_DIR_ENV} to a local copy: a folder holding "
                "cifar-10-batches-py/ (data_batch_1 ... data_batch_5, test_batch) or "
                "cifar-10-python.tar.gz, the official 'python version' from "
                "https://www.cs.toronto.edu/~kriz/cifar.html. See DEVELOPING.md, section "
                "'Offline use'."
            ) from None
        train = (x_train, y_train.reshape(-1).astype(np.uint8))
        test = (x_test, y_test.reshape(-1).astype(np.uint8))
        provenance = DataProvenance(source="the Keras download (sha256 verified by Keras)",
                                    official=True)
    else:
        train, test, provenance = read_local_copy(data_dir)
        if not provenance.official:
            warnings.warn(provenance.describe(), ModifiedDataWarning, stacklevel=2)
    train, test = LabelledImages(*train), LabelledImages(*test)
    return ((train, test), provenance) if return_provenance else (train, test)


def _stratified_indices(y, size, seed, what) -> np.ndarray:
    """Sorted indices of `size // classes` random examples of each class (`what` names size)."""
    classes = np.unique(y)
    if size % len(classes):
        raise ValueError(f"{what}={size} must be a multiple of the {len(classes)} classes.")
    per_class, rng, picks = size // len(classes), np.random.default_rng(seed), []
    for label in classes:
        members = np.flatnonzero(y == label)
        if per_class > len(members):
            raise ValueError(f"asked for {per_class} examples of class {label}, but only "
                             f"{len(members)} exist; ask for fewer.")
        picks.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(picks))


def train_val_split(x, y, val_size=5000, seed=42):
    """Split off a stratified validation set (`LabelledImages` train, then val): every class
    gives `val_size // num_classes` images, and a seed gives every notebook the same split."""
    y = np.asarray(y)
    val_idx = _stratified_indices(y, val_size, seed, "val_size")
    train_mask = np.ones(len(y), dtype=bool)
    train_mask[val_idx] = False
    return LabelledImages(x[train_mask], y[train_mask]), LabelledImages(x[val_idx], y[val_idx])


def stratified_subset(x, y, size, seed=0):
    """A class-balanced random subset of `size` examples as `LabelledImages`, in array order."""
    y = np.asarray(y)
    idx = _stratified_indices(y, size, seed, "size")
    return LabelledImages(x[idx], y[idx])


@dataclass(frozen=True)
class CifarData:
    """The three splits every notebook uses, as `LabelledImages`, and where they came from."""
    train: LabelledImages
    val: LabelledImages
    test: LabelledImages
    provenance: DataProvenance

    def describe(self) -> str:
        """Two lines: the data's provenance and the number of images in each split."""
        return (f"{self.provenance.describe()}\n"
                f"train {len(self.train.labels):,} | validation {len(self.val.labels):,} | "
                f"test {len(self.test.labels):,} images")


def load_splits(data_dir=None, *, val_size=5000, seed=42, train_size=None, test_size=None,
                verbose=True):
    """Load CIFAR-10 as a `CifarData`: `train`, a stratified `val` of `val_size`, and `test`.

    `train_size` / `test_size` take stratified subsets (quick runs; None keeps all). `verbose`
    prints `describe()`, which then replaces `load_cifar10`'s `ModifiedDataWarning`."""
    with warnings.catch_warnings():
        if verbose:
            warnings.simplefilter("ignore", ModifiedDataWarning)
        (train, test), provenance = load_cifar10(data_dir, return_provenance=True)
    train, val = train_val_split(*train, val_size=val_size, seed=seed)
    if train_size is not None:
        train = stratified_subset(*train, train_size, seed=seed)
    if test_size is not None:
        test = stratified_subset(*test, test_size, seed=seed)
    splits = CifarData(train=train, val=val, test=test, provenance=provenance)
    if verbose:
        print(splits.describe())
    return splits
