"""Extract frozen-backbone features once and cache them on disk.

`extract_features` does it for the three splits of a notebook (and their mirror images);
`features_of` (advanced) for one array of images.

When the backbone is frozen, its output for a given image never changes, yet a plain
`model.fit` recomputes it every epoch: on a laptop CPU that is most of an hour per
epoch at 160x160. Running the backbone once and training the head on the stored
1280-number feature vectors takes seconds instead.

A cache file is keyed by everything that changes the features: the backbone's name
and weights, the input size, the preprocessing, the exact images, and whether they
were mirrored. Change any of them and the features are extracted afresh.

On a machine without a GPU the frozen network runs in LiteRT's CPU kernels (the
runtime notebook 04 ships models with) rather than in TensorFlow: for MobileNetV2 on 2
cores several times faster, with outputs that differ from TensorFlow's by about 1e-5 of
their range, some 50 times less than the float16 rounding of a cache. With a GPU,
TensorFlow runs it there. `engine=` chooses explicitly.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .files import default_cache_dir, write_atomic


def fingerprint(*arrays) -> str:
    """A short hash of the shapes, dtypes and contents of NumPy arrays."""
    digest = hashlib.sha1()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(array.data)
    return digest.hexdigest()[:16]


_PROBE = (np.arange(16 * 16 * 3).reshape(1, 16, 16, 3) % 256).astype(np.float32)


def _behaviour(preprocess) -> str:
    """Fingerprint of what `preprocess` does to a fixed probe image.

    Names are not enough: two `Normalization` layers adapted to different images share
    a name but not their statistics, and every lambda is called "<lambda>". The probe
    is copied because `preprocess_input` changes float arrays in place.
    """
    return fingerprint(np.asarray(preprocess(_PROBE.copy()), dtype=np.float32))


def frozen_runner(extractor, engine=None):
    """A function from a `tf.data` dataset of input batches to `extractor`'s outputs.

    `engine`: "litert" runs the network in LiteRT's CPU kernels (XNNPACK), converted in
    memory on the first call (seconds); "tensorflow" runs `extractor.predict`; None
    (default) picks TensorFlow when it sees a GPU or LiteRT is not installed, else LiteRT.
    Only for frozen networks: nothing here trains, and no BatchNorm statistics change.
    """
    import tensorflow as tf

    if engine is None:
        has_litert = importlib.util.find_spec("ai_edge_litert") is not None
        engine = "tensorflow" if tf.config.list_physical_devices("GPU") or not has_litert \
            else "litert"
    if engine == "tensorflow":
        return lambda dataset: extractor.predict(dataset, verbose=0)
    if engine != "litert":
        raise ValueError(f"engine must be 'litert', 'tensorflow' or None, got {engine!r}")

    @functools.cache
    def converted():
        from .shipping import LiteRTModel

        return LiteRTModel.from_keras(extractor, num_threads=os.cpu_count() or 1)

    return lambda dataset: np.concatenate([converted().run(batch) for batch in dataset])


def features_of(extractor, x, *, image_size, preprocess, mirrored=False, dtype="float32",
                batch_size=32, engine=None, cache_dir=None, verbose=True):
    """Features of images `x` (uint8, N x 32 x 32 x 3) from a frozen `extractor`, cached.

    Args:
        extractor: a model mapping preprocessed images to feature vectors, e.g.
            `models.build_mobilenet_v2(image_size)`.
        x: the images.
        image_size: size the images are resized to before the extractor.
        preprocess: the normalisation the extractor expects, e.g.
            `keras.applications.mobilenet_v2.preprocess_input`.
        mirrored: extract the features of the left-right mirrored images instead, a
            cheap stand-in for augmentation when training on cached features, and the
            second view for test-time mirroring.
        dtype: how the features are stored, on disk and in memory; "float16" halves
            the size of large activation maps at a precision the training cannot tell apart.
        batch_size: images per forward pass; 32 keeps a 160x160 MobileNetV2's
            activations in a CPU's cache (measured 1.5x faster than 128 on 2 cores).
        engine: what runs the network (see `frozen_runner`); not part of the cache
            key, since both give the same features far below float16's rounding.
        cache_dir: where the `.npy` files go (default: `default_cache_dir()`).
        verbose: print one line saying whether the features were loaded or computed.

    Returns an array of shape (N, ...) (the extractor's output), in the order of `x`.
    """
    start = time.perf_counter()
    features, computed, name = _cached_features(extractor, x, image_size, preprocess, mirrored,
                                                dtype, batch_size, cache_dir,
                                                frozen_runner(extractor, engine))
    seconds = time.perf_counter() - start
    what = f"{len(x):,} {'mirrored ' if mirrored else ''}images at {image_size}x{image_size}"
    if verbose and computed:
        print(f"Extracted features of {what} in {seconds:.0f} s "
              f"({len(x) / seconds:.0f} images/s); cached as {name}.")
    elif verbose:
        print(f"Loaded cached features of {what} ({name}).")
    return features


def _cached_features(extractor, x, image_size, preprocess, mirrored, dtype, batch_size,
                     cache_dir, run):
    """(features, whether they were computed now, cache file name); `run` from `frozen_runner`.

    The key holds the extractor's name (for a `split_mobilenet_v2` part, the cut), its
    weights, the input size, what the preprocessing does, the images, the view and dtype.
    """
    from .preprocessing import make_dataset

    def compute():
        dataset = make_dataset(x, batch_size=batch_size, image_size=image_size,
                               preprocess=preprocess, mirrored=mirrored)
        return run(dataset).astype(dtype)

    key = [extractor.name, fingerprint(*extractor.get_weights()), str(image_size),
           _behaviour(preprocess), fingerprint(x), str(mirrored), str(np.dtype(dtype))]
    prefix = f"{extractor.name}-{image_size}px-{'mirrored-' if mirrored else ''}"
    return _cached(key, prefix, compute, cache_dir)


def _cached(key, prefix, compute, cache_dir):
    """`compute()`, stored as `<prefix><hash of key>.npy`; loaded instead when it exists."""
    name = f"{prefix}{hashlib.sha1('|'.join(key).encode()).hexdigest()[:16]}.npy"
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    path = cache / name
    if path.is_file():
        return np.load(path), False, name
    values = compute()
    cache.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: np.save(f, values))
    return values, True, name


_PARTS = ("train", "val", "test", "train_mirrored", "val_mirrored", "test_mirrored")


class FeatureSplit(NamedTuple):
    """Features of one split's images and their labels, in the same order."""

    features: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class SplitFeatures:
    """Cached features of the train, validation and test splits, as `FeatureSplit`s.

    With `mirrored=True` extraction, `train_mirrored` etc. hold the features of the
    left-right mirrored images; otherwise they are None. `seconds` is the time the
    extraction took (close to 0 when everything came from the cache).
    """

    train: FeatureSplit
    val: FeatureSplit
    test: FeatureSplit
    train_mirrored: FeatureSplit | None
    val_mirrored: FeatureSplit | None
    test_mirrored: FeatureSplit | None
    seconds: float

    def map(self, model, *, batch_size=64, engine=None, cache_dir=None) -> SplitFeatures:
        """The outputs of `model` (frozen) on every stored split, cached like the features.

        E.g. the upper part of a split backbone on cached activations gives the pooled
        features without running the lower part again. `engine` as in `frozen_runner`.
        `seconds` becomes the time of this extraction plus the time `model` took. Prints
        one line.
        """
        import tensorflow as tf

        start = time.perf_counter()
        weights = fingerprint(*model.get_weights())
        run = frozen_runner(model, engine)
        mapped, computed = {}, 0
        for key in _PARTS:
            part = getattr(self, key)
            if part is None:
                mapped[key] = None
                continue
            batches = tf.data.Dataset.from_tensor_slices(part.features).batch(batch_size).map(
                lambda x: tf.cast(x, tf.float32))
            values, now, _ = _cached(
                [model.name, weights, fingerprint(part.features)], f"{model.name}-",
                functools.partial(run, batches), cache_dir)
            computed += len(values) if now else 0
            mapped[key] = FeatureSplit(values, part.labels)
        seconds = time.perf_counter() - start
        print(f"{'Computed' if computed else 'Loaded'} {model.name} outputs of every split"
              + (f" in {seconds:.0f} s ({computed / seconds:.0f} images/s)." if computed
                 else " from the cache."))
        return SplitFeatures(**mapped, seconds=self.seconds + seconds)

    @property
    def nbytes(self) -> int:
        """Memory the stored features take."""
        return sum(getattr(self, key).features.nbytes for key in _PARTS
                   if getattr(self, key) is not None)

    def train_and_mirrored(self) -> FeatureSplit:
        """The training features followed by those of the mirrored images: twice the data."""
        if self.train_mirrored is None:
            raise ValueError("no mirrored features: extract them with mirrored=True")
        return FeatureSplit(np.concatenate([self.train.features, self.train_mirrored.features]),
                            np.concatenate([self.train.labels, self.train_mirrored.labels]))


def extract_features(extractor, data, *, image_size, preprocess, mirrored=False,
                     dtype="float32", engine=None, cache_dir=None) -> SplitFeatures:
    """Features of every split of `data` (from `load_splits`) from a frozen `extractor`.

    Each array is computed once and cached on disk (see `features_of`); a rerun loads
    it in a moment. With `mirrored=True` the mirror images of every split are
    extracted too. `dtype` and `engine` as in `features_of`. Prints one line: what was
    extracted or loaded, and how fast.
    """
    start = time.perf_counter()
    run = frozen_runner(extractor, engine)  # converts at most once, when first needed
    views = (False, True) if mirrored else (False,)
    parts, computed = {}, 0
    for view in views:
        for split in ("train", "val", "test"):
            images, labels = getattr(data, split)
            values, now, _ = _cached_features(extractor, images, image_size, preprocess, view,
                                              dtype, 32, cache_dir, run)
            computed += len(images) if now else 0
            parts[f"{split}_mirrored" if view else split] = FeatureSplit(values, labels)
    seconds = time.perf_counter() - start
    what = f"{extractor.name} features at {image_size}x{image_size} of the train, validation " \
           f"and test images{' and their mirror images' if mirrored else ''}"
    if computed:
        print(f"Extracted {what} in {seconds:.0f} s ({computed / seconds:.0f} images/s); "
              "cached for the next run.")
    else:
        print(f"Loaded {what} from the cache.")
    return SplitFeatures(**{key: parts.get(key) for key in _PARTS}, seconds=seconds)
