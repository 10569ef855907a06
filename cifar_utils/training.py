"""Training helpers: seeding, compiling, callbacks and a quiet, timed `fit`.

Keras' default progress bars print hundreds of lines into a notebook and bury the
numbers that matter. `fit` here trains silently and prints one line per epoch with
the metrics, learning rate and time, and returns the history together with timings
and the learning rate along the way (for `plots.plot_history`).

Every model is built and compiled under `distribution_strategy()`: on several GPUs the
same notebooks train data-parallel, each batch size read as per GPU.

Advanced: `replicas`, `under_strategy`, `device_name` (recorded with every result) and
`format_duration`.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field

import keras

QUICK_ENV = "CIFAR_UTILS_QUICK"
"""Environment variable switching every notebook to quick mode."""


def quick_mode() -> bool:
    """True when `$CIFAR_UTILS_QUICK` is 1: notebooks then use a small subset and 1-2 epochs.

    Quick mode is for tests and a first pass in class; its numbers are not results.
    """
    value = os.environ.get(QUICK_ENV, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ValueError(f"{QUICK_ENV}={value!r} is not understood: set it to 1 for quick mode, "
                     "or to 0 (or unset it) for the full run.")


_strategy = None


def distribution_strategy(devices=None):
    """The `tf.distribute` strategy every model of the series is built and trained under.

    With two or more GPUs it is `tf.distribute.MirroredStrategy`: a copy of the model on
    every GPU, each batch split between them, gradients averaged (data parallelism).
    With one GPU or none it is TensorFlow's default strategy, which changes nothing.
    `devices` mirrors across the named devices instead (two logical CPUs in a test, or
    a subset of the GPUs); the choice holds for the rest of the session. Builders and
    `compile_classifier` use it by themselves, and batch sizes are per replica.
    """
    global _strategy
    import tensorflow as tf

    if devices is None and _strategy is not None:
        return _strategy
    if devices is None:
        gpus = tf.config.list_logical_devices("GPU")
        devices = [gpu.name for gpu in gpus] if len(gpus) > 1 else None
    _strategy = tf.distribute.MirroredStrategy(devices) if devices else tf.distribute.get_strategy()
    return _strategy


def replicas() -> int:
    """Copies of the model trained in parallel (1 on a CPU or one GPU)."""
    return distribution_strategy().num_replicas_in_sync


def under_strategy(build):
    """Decorator: run a model builder inside `distribution_strategy().scope()`."""

    @functools.wraps(build)
    def built_under_strategy(*args, **kwargs):
        with distribution_strategy().scope():
            return build(*args, **kwargs)

    return built_under_strategy


def set_seed(seed=42):
    """Seed Python, NumPy and TensorFlow so reruns on the same machine give the same numbers.

    Bit-for-bit repeatability also needs the same hardware, library versions and
    thread scheduling; on a GPU, some operations stay slightly non-deterministic.
    """
    keras.utils.set_random_seed(seed)


@under_strategy
def compile_classifier(model, learning_rate=1e-3, *, weight_decay=None, clipnorm=None):
    """Compile `model` for integer labels with Adam (or AdamW when `weight_decay` is set).

    `learning_rate` may be a number or a `keras.optimizers.schedules` schedule.
    `clipnorm` caps the gradient norm, a safety net when fine-tuning pretrained layers.
    Returns the model, so the call can be chained.
    """
    if weight_decay:
        optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay,
                                           clipnorm=clipnorm)
    else:
        optimizer = keras.optimizers.Adam(learning_rate, clipnorm=clipnorm)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def cosine_schedule(peak_learning_rate, epochs, steps_per_epoch, warmup_epochs=1):
    """Learning rate that warms up linearly for `warmup_epochs`, then decays to 0 along a cosine.

    Warm-up avoids large, noisy first steps while BatchNorm statistics settle; the long
    decay lets training settle into a good minimum. Use it instead of reduce-on-plateau
    (`standard_callbacks(reduce_lr_patience=0)`), not together with it.
    """
    warmup_steps = int(warmup_epochs * steps_per_epoch)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak_learning_rate / 100,
        decay_steps=max(int(epochs * steps_per_epoch) - warmup_steps, 1),
        warmup_target=peak_learning_rate, warmup_steps=warmup_steps)


def standard_callbacks(monitor="val_accuracy", patience=5, reduce_lr_patience=2,
                       reduce_lr_factor=0.5, min_lr=1e-6, checkpoint_path=None):
    """Early stopping (restoring the best weights), reduce-on-plateau and optional checkpointing.

    * `EarlyStopping` ends training once `monitor` has not improved for `patience`
      epochs and rolls the model back to its best epoch.
    * `ReduceLROnPlateau` multiplies the learning rate by `reduce_lr_factor` after
      `reduce_lr_patience` epochs without improvement (0 disables it).
    * `ModelCheckpoint` (when `checkpoint_path` ends in `.keras`) keeps the best model
      on disk, so an interrupted run loses nothing.
    """
    callbacks = [keras.callbacks.EarlyStopping(monitor=monitor, patience=patience,
                                               restore_best_weights=True)]
    if reduce_lr_patience:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, factor=reduce_lr_factor, patience=reduce_lr_patience,
            min_lr=min_lr))
    if checkpoint_path is not None:
        callbacks.append(keras.callbacks.ModelCheckpoint(
            str(checkpoint_path), monitor=monitor, save_best_only=True))
    return callbacks


_SHORT_NAMES = {"accuracy": "acc", "val_accuracy": "val_acc"}


class EpochLogger(keras.callbacks.Callback):
    """Prints one compact line per epoch; records epoch durations and the learning rate.

    The learning rate is sampled about ten times per epoch, as (epoch, rate) pairs with
    fractional epochs, so that a warm-up within the first epoch shows in a plot.
    """

    SAMPLES_PER_EPOCH = 10

    def __init__(self, epochs=None):
        super().__init__()
        self.epochs = epochs
        self.epoch_seconds = []
        self.learning_rates = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        steps = (self.params or {}).get("steps") or 0
        every = max(steps // self.SAMPLES_PER_EPOCH, 1)
        if batch % every == 0:
            position = self._epoch + (batch / steps if steps else 0.0)
            self.learning_rates.append((position, _learning_rate(self.model)))

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        self.epoch_seconds.append(seconds)
        self.learning_rates.append((epoch + 1.0, _learning_rate(self.model)))
        total = f"/{self.epochs}" if self.epochs else ""
        width = len(str(self.epochs or ""))
        parts = [f"epoch {epoch + 1:>{width}}{total}", f"{seconds:5.1f}s"]
        for name, value in (logs or {}).items():
            if name != "learning_rate":
                parts.append(f"{_SHORT_NAMES.get(name, name)} {_metric(name, value)}")
        parts.append(f"lr {_learning_rate(self.model):.1e}")
        print("  ".join(parts))


@dataclass
class TrainingRun:
    """What `fit` returns: per-epoch metrics, how long training took, the learning rate.

    `learning_rates` holds (epoch, rate) pairs; epoch 0.5 is the middle of the first epoch.
    """

    history: dict
    seconds: float
    epoch_seconds: list = field(default_factory=list)
    learning_rates: list = field(default_factory=list)

    @property
    def epochs(self) -> int:
        """Number of epochs actually run (early stopping may end before the maximum)."""
        return len(self.epoch_seconds)


def fit(model, train, validation=None, *, epochs, callbacks=(), **fit_kwargs) -> TrainingRun:
    """`model.fit` without progress bars: one line per epoch, timings returned.

    `train` and `validation` are what `model.fit` accepts (typically `tf.data`
    datasets from `data.make_dataset`, or `(x, y)` tuples for cached features).
    Extra keyword arguments go to `model.fit`; a `batch_size` is per replica, like
    every batch size of the series (see `distribution_strategy`).
    """
    logger = EpochLogger(epochs)
    if "batch_size" in fit_kwargs:
        fit_kwargs["batch_size"] *= replicas()
    if isinstance(train, tuple):
        fit_kwargs["x"], fit_kwargs["y"] = train
    else:  # a tf.data pipeline shuffles itself (make_dataset(..., shuffle=True))
        fit_kwargs.setdefault("shuffle", False)
        fit_kwargs["x"] = train
    if isinstance(validation, tuple):  # e.g. a FeatureSplit: Keras wants a plain (x, y)
        validation = tuple(validation)
    start = time.perf_counter()
    history = model.fit(validation_data=validation, epochs=epochs,
                        callbacks=[*callbacks, logger], verbose=0, **fit_kwargs)
    seconds = time.perf_counter() - start
    epochs_run = len(logger.epoch_seconds)
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.EarlyStopping):
            _report_early_stopping(callback, epochs_run)
    print(f"Training took {format_duration(seconds)} "
          f"({epochs_run} epoch{'s' if epochs_run != 1 else ''}).")
    return TrainingRun(history=history.history, seconds=seconds,
                       epoch_seconds=logger.epoch_seconds, learning_rates=logger.learning_rates)


def validation_accuracy(head, features, *, epochs, learning_rate=1e-3, batch_size=256) -> float:
    """Train `head` on cached `features` (from `extract_features`) silently; its validation accuracy.

    For side-by-side comparisons of settings: Adam at `learning_rate`, early stopping
    on validation accuracy (patience 3, best weights kept), no per-epoch lines.
    """
    from .metrics import evaluate

    compile_classifier(head, learning_rate=learning_rate)
    head.fit(*features.train, epochs=epochs, batch_size=batch_size * replicas(), verbose=0,
             validation_data=tuple(features.val),
             callbacks=standard_callbacks(patience=3, reduce_lr_patience=0))
    return evaluate(head, *features.val).accuracy


def _report_early_stopping(callback, epochs_run):
    """Say when training stopped early, and when the weights are not the last epoch's.

    Keras restores the best epoch's weights at the end of every run when
    `restore_best_weights=True`, also when all epochs ran, and says nothing about it.
    """
    best = getattr(callback, "best_epoch", None)
    if callback.stopped_epoch:
        print(f"Early stopping after epoch {callback.stopped_epoch + 1}.")
    if callback.restore_best_weights and best is not None and best + 1 != epochs_run:
        print(f"Weights restored from epoch {best + 1}, the best "
              f"({callback.monitor} {_metric(callback.monitor, callback.best)}).")


def _learning_rate(model) -> float:
    """The optimizer's current learning rate (a schedule's value at this step), as a number."""
    import tensorflow as tf

    rate = model.optimizer.learning_rate  # a Keras variable, a tensor, or a mirrored variable
    return float(tf.convert_to_tensor(getattr(rate, "value", rate)))


def _metric(name, value) -> str:
    """Accuracies in percent, losses as numbers."""
    return f"{value:.2%}" if name.endswith("accuracy") else f"{value:.4f}"


def format_duration(seconds) -> str:
    """'45 s' under two minutes, else '3.2 min': how times are shown in text and tables."""
    seconds = float(seconds)
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def device_name() -> str:
    """'GPU (<name>)' when TensorFlow sees a GPU, else 'CPU'; recorded with every result."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"GPU ({details.get('device_name', gpus[0].name)})"
