"""Training plumbing: the device strategy, a quiet per-epoch log, timings.
`train_head`, written out in notebook 02, is reused by 03 when 02's heads are missing."""

from __future__ import annotations

import time

import keras


def distribution_strategy(devices=None):
    """Make `MirroredStrategy` (a model copy on each device, batches split, gradients averaged)
    the default with two or more GPUs (or the named `devices`), else TensorFlow's default."""
    import tensorflow as tf
    if devices is None:
        gpus = tf.config.list_logical_devices("GPU")
        devices = [gpu.name for gpu in gpus] if len(gpus) > 1 else None
    strategy = tf.distribute.MirroredStrategy(devices) if devices else None
    tf.distribute.experimental_set_strategy(strategy)
    return tf.distribute.get_strategy()


_SHORT_NAMES = {"accuracy": "acc", "val_accuracy": "val_acc"}


class TrainingLog(keras.callbacks.Callback):
    """A callback that prints one line per epoch and keeps the run's metrics and times:
    `history` (as Keras' `History`), `epoch_seconds`, `seconds` and `learning_rates`,
    (epoch, rate) pairs ten times an epoch, so that a warm-up shows in `plot_history`."""

    def __init__(self):
        super().__init__()
        self.history, self.epoch_seconds, self.learning_rates, self.seconds = {}, [], [], 0.0

    def on_train_begin(self, logs=None):
        self._started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._epoch = time.perf_counter(), epoch

    def on_train_batch_begin(self, batch, logs=None):
        steps = self.params.get("steps") or 0
        if batch % max(steps // 10, 1) == 0:
            position = self._epoch + (batch / steps if steps else 0.0)
            self.learning_rates.append((position, _learning_rate(self.model)))

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        self.epoch_seconds.append(seconds)
        self.learning_rates.append((epoch + 1.0, _learning_rate(self.model)))
        epochs = self.params.get("epochs")
        parts = [f"epoch {epoch + 1:>{len(str(epochs))}}/{epochs}", f"{seconds:5.1f}s"]
        for name, value in (logs or {}).items():
            if name != "learning_rate":
                self.history.setdefault(name, []).append(float(value))
                shown = f"{value:.2%}" if name.endswith("accuracy") else f"{value:.4f}"
                parts.append(f"{_SHORT_NAMES.get(name, name)} {shown}")
        parts.append(f"lr {_learning_rate(self.model):.1e}")
        print("  ".join(parts))

    def on_train_end(self, logs=None):
        self.seconds = time.perf_counter() - self._started
        epochs = len(self.epoch_seconds)  # early stopping may end before the maximum
        print(f"Training took {format_duration(self.seconds)} "
              f"({epochs} epoch{'s' if epochs != 1 else ''}).")


def train_head(head, train, validation, *, learning_rate, batch_size, epochs, patience,
               reduce_lr_patience):
    """Train a head on cached `(features, labels)` pairs (notebook 02 writes it out and explains
    it): Adam, early stopping on validation accuracy keeping the best weights, the rate halved
    after `reduce_lr_patience` epochs without a gain (0: never). Returns the `TrainingLog`."""
    head.compile(optimizer=keras.optimizers.Adam(learning_rate),
                 loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks = [keras.callbacks.EarlyStopping("val_accuracy", patience=patience,
                                               restore_best_weights=True, verbose=1)]
    if reduce_lr_patience:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            "val_accuracy", factor=0.5, patience=reduce_lr_patience, min_lr=1e-6))
    log = TrainingLog()
    head.fit(*train, validation_data=tuple(validation), epochs=epochs, batch_size=batch_size,
             callbacks=[*callbacks, log], verbose=0)
    return log


def _learning_rate(model) -> float:
    """The optimizer's current learning rate (a schedule's value at this step), as a number."""
    import tensorflow as tf
    rate = model.optimizer.learning_rate  # a Keras variable, a tensor, or a mirrored variable
    return float(tf.convert_to_tensor(getattr(rate, "value", rate)))


def format_duration(seconds) -> str:
    """'45 s' under two minutes, else '3.2 min': how times are shown in text and tables."""
    seconds = float(seconds)
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
