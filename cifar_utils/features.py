"""Extract frozen-backbone features once and cache them on disk.

When the backbone is frozen, its output for a given image never changes, yet a plain
`model.fit` recomputes it every epoch: on a laptop CPU that is most of an hour per
epoch at 160x160. Running the backbone once and training the head on the stored
1280-number feature vectors takes seconds instead.

A cache file is keyed by everything that changes the features: the backbone's name
and weights, the input size, the preprocessing, the exact images, and whether they
were mirrored. Change any of them and the features are extracted afresh.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np

from .results import write_atomic

CACHE_ENV = "CIFAR_UTILS_CACHE"
"""Environment variable overriding where cached features are stored."""


def default_cache_dir() -> Path:
    """`$CIFAR_UTILS_CACHE`, else `$XDG_CACHE_HOME/cifar_utils`, else `~/.cache/cifar_utils`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cifar_utils"


def fingerprint(*arrays) -> str:
    """A short hash of the shapes, dtypes and contents of NumPy arrays."""
    digest = hashlib.sha1()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(array.data)
    return digest.hexdigest()[:16]


_PROBE = np.arange(16 * 16 * 3, dtype=np.uint32).reshape(1, 16, 16, 3) % 256


def _behaviour(preprocess) -> str:
    """Fingerprint of what `preprocess` does to a fixed probe image.

    Names are not enough: two `standardizer(...)` closures share a name but not their
    statistics, and every lambda is called "<lambda>".
    """
    return fingerprint(np.asarray(preprocess(_PROBE.astype(np.uint8)), dtype=np.float32))


def extract_features(extractor, x, *, image_size, preprocess, flip=False, batch_size=128,
                     cache_dir=None, verbose=True):
    """Features of images `x` (uint8, N x 32 x 32 x 3) from a frozen `extractor`, cached.

    Args:
        extractor: a model mapping preprocessed images to feature vectors, e.g.
            `models.mobilenet_v2_backbone(image_size)`.
        x: the images.
        image_size: size the images are resized to before the extractor.
        preprocess: the normalisation the extractor expects, e.g. `mobilenet_preprocess`.
        flip: extract the features of the left-right mirrored images instead, a cheap
            stand-in for augmentation when training on cached features.
        batch_size: images per forward pass (memory vs speed).
        cache_dir: where the `.npy` files go (default: `default_cache_dir()`).
        verbose: print one line saying whether the features were loaded or computed.

    Returns a float32 array of shape (N, num_features), in the order of `x`.
    """
    from .data import make_dataset

    key = "|".join([
        extractor.name, fingerprint(*extractor.get_weights()), str(image_size),
        _behaviour(preprocess), fingerprint(x), str(flip),
    ])
    name = f"{extractor.name}-{image_size}px-{'flip-' if flip else ''}" \
           f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.npy"
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    path = cache / name
    what = f"{len(x):,} {'mirrored ' if flip else ''}images at {image_size}x{image_size}"
    if path.is_file():
        if verbose:
            print(f"Loaded cached features of {what} ({name}).")
        return np.load(path)
    images = x[:, :, ::-1] if flip else x
    start = time.perf_counter()
    dataset = make_dataset(images, batch_size=batch_size, image_size=image_size,
                           preprocess=preprocess)
    features = extractor.predict(dataset, verbose=0).astype(np.float32)
    seconds = time.perf_counter() - start
    cache.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: np.save(f, features))
    if verbose:
        print(f"Extracted features of {what} in {seconds:.0f} s "
              f"({len(x) / seconds:.0f} images/s); cached as {name}.")
    return features

