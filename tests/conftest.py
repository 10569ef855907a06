"""Shared fixtures: synthetic CIFAR-10 files in the official format, small image arrays."""

import os
import pickle
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cifar_utils.reader import BATCH_FOLDER, TEST_FILE, TRAIN_FILES  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))  # publish, ship_models, results_tables

PER_BATCH = 20  # images per synthetic batch file: 2 per class


def synthetic_batch(seed, n=PER_BATCH):
    """A batch dict like the official ones: channel-planar uint8 rows, labels cycling 0..9."""
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": f"synthetic batch {seed}".encode(),
        b"labels": [i % 10 for i in range(n)],
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
    }


def write_batches(folder, protocol=2):
    """Write data_batch_1..5 and test_batch into `folder`; return the batch dicts by name."""
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for seed, name in enumerate((*TRAIN_FILES, TEST_FILE)):
        batches[name] = synthetic_batch(seed)
        (folder / name).write_bytes(pickle.dumps(batches[name], protocol=protocol))
    return batches


@pytest.fixture
def cifar_dir(tmp_path, monkeypatch):
    """A folder holding `cifar-10-batches-py/` with synthetic batches; $CIFAR10_DIR unset."""
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    write_batches(tmp_path / BATCH_FOLDER)
    return tmp_path


@pytest.fixture
def images():
    """40 random 32x32 RGB uint8 images with 4 of each class."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 32, 32, 3), dtype=np.uint8)
    y = np.arange(40, dtype=np.uint8) % 10
    return x, y
