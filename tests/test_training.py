"""The quiet per-epoch log, the shared head recipe, quick mode and durations."""

import re
import warnings

import keras
import numpy as np
import pytest

from cifar_utils import quick_mode
from cifar_utils.training import (
    TrainingLog,
    format_duration,
    train_head,
)


def tiny_model():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])


def tiny_data(n=60):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0)


def compiled(learning_rate):
    keras.utils.set_random_seed(0)
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_the_log_prints_one_line_per_epoch_and_times_them(capsys):
    model = compiled(0.05)
    x, y = tiny_data()
    log = TrainingLog()
    history = model.fit(x, y, validation_data=(x, y), epochs=3, batch_size=16, verbose=0,
                        callbacks=[log])
    lines = capsys.readouterr().out.splitlines()
    assert len(log.epoch_seconds) == 3
    assert 0 < sum(log.epoch_seconds) <= log.seconds
    assert set(log.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    for name, values in log.history.items():
        assert values == pytest.approx(history.history[name]), name  # Keras' own numbers
    assert [line.split()[:2] for line in lines[:3]] == [["epoch", "1/3"], ["epoch", "2/3"],
                                                       ["epoch", "3/3"]]
    assert "val_acc" in lines[0] and "lr 5.0e-02" in lines[0]
    assert re.search(r" acc \d+\.\d\d% ", lines[0]), "accuracies read in percent"
    assert re.search(r" loss \d\.\d{4} ", lines[0]), "losses as numbers"
    assert lines[-1] == f"Training took {format_duration(log.seconds)} (3 epochs)."
    assert len(lines) == 4  # no progress bars


def test_the_log_counts_the_epochs_early_stopping_ran(capsys):
    model = compiled(0.0)  # learning rate 0: never improves
    x, y = tiny_data()
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=1)
    log = TrainingLog()
    model.fit(x, y, validation_data=(x, y), epochs=10, verbose=0, callbacks=[stop, log])
    assert len(log.epoch_seconds) == len(log.history["val_loss"]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("epoch  1/10") and lines[-1].endswith("(2 epochs).")


def test_the_log_on_a_dataset_raises_no_warning(capsys):
    """A pipeline shuffles itself: with `shuffle=False` (else Keras warns that it ignores
    it), nothing the log does adds a warning to a notebook's output."""
    from cifar_utils.pipelines import make_dataset

    model = compiled(0.01)
    x, y = tiny_data()
    log = TrainingLog()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(make_dataset(x, y, batch_size=16, shuffle=True, seed=0), epochs=1, verbose=0,
                  shuffle=False, callbacks=[log])
    assert [str(w.message) for w in caught] == []
    assert len(log.epoch_seconds) == 1 and "(1 epoch)." in capsys.readouterr().out
    assert "val_loss" not in log.history


def test_the_log_records_the_learning_rate_within_each_epoch(capsys):
    model = tiny_model()
    x, y = tiny_data(n=80)
    schedule = keras.optimizers.schedules.CosineDecay(  # 20 steps of warm-up, then a decay
        initial_learning_rate=0.001, decay_steps=20, warmup_target=0.1, warmup_steps=20)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    log = TrainingLog()
    model.fit(x, y, epochs=2, batch_size=4, verbose=0, callbacks=[log])  # 20 steps per epoch
    positions = [position for position, _ in log.learning_rates]
    rates = [rate for _, rate in log.learning_rates]
    assert positions[0] == 0 and positions[1] == 0.1 and positions[-1] == 2
    assert len([p for p in positions if p < 1]) == 10  # every other step of 20
    assert rates[0] == pytest.approx(0.001) and rates[1] > rates[0]  # the warm-up shows
    assert rates[-1] < max(rates)  # and the decay
    assert "lr 1.0e-01" in capsys.readouterr().out.splitlines()[0]  # the rate at the epoch's end


def separable(n=200, width=8, seed=0):
    """Four classes, each marked by a high value in its own column."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, width)).astype("float32")
    y = (np.arange(n) % 4).astype("int64")
    x[np.arange(n), y] += 4.0
    return x, y


def test_train_head_trains_and_keeps_the_best_epoch(capsys):
    keras.utils.set_random_seed(0)
    x, y = separable()
    head = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="softmax")])
    log = train_head(head, (x[:150], y[:150]), (x[150:], y[150:]), learning_rate=0.05,
                     batch_size=32, epochs=6, patience=2, reduce_lr_patience=0)
    epochs = len(log.epoch_seconds)
    assert isinstance(log, TrainingLog) and 1 <= epochs <= 6
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(log.history)
    assert isinstance(head.optimizer, keras.optimizers.Adam)
    accuracy = np.mean(head.predict(x[150:], verbose=0).argmax(axis=1) == y[150:])
    assert accuracy == pytest.approx(max(log.history["val_accuracy"]))  # the best weights kept
    assert accuracy > 0.8  # well above chance (1/4): it learned
    assert log.params["steps"] == 5  # batches of 32: the batch size is used as given
    out = capsys.readouterr().out
    assert out.count("\nepoch ") + out.startswith("epoch ") == epochs
    assert "Training took" in out


def confident_head():
    """A linear head already as right as it gets on the `separable` images: its validation
    accuracy is the same from the first epoch on, and no later epoch improves it."""
    head = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="softmax")])
    head.layers[0].set_weights([np.eye(8, 4, dtype="float32") * 20, np.zeros(4, "float32")])
    return head


@pytest.mark.parametrize("reduce_lr_patience, rates", [
    (1, [1e-4, 5e-5, 2.5e-5, 1.25e-5]),  # halved after every epoch without a gain
    (0, [1e-4] * 4),  # never
])
def test_train_head_stops_after_patience_and_halves_the_rate_on_a_plateau(capsys,
                                                                          reduce_lr_patience,
                                                                          rates):
    x, y = separable()
    log = train_head(confident_head(), (x, y), (x, y), learning_rate=1e-4, batch_size=50,
                     epochs=20, patience=3, reduce_lr_patience=reduce_lr_patience)
    assert len(set(log.history["val_accuracy"])) == 1 and log.history["val_accuracy"][0] > 0.9
    assert len(log.epoch_seconds) == 4  # the best epoch, then `patience` epochs without a gain
    sampled = dict(log.learning_rates)  # epoch k ends where epoch k + 1 begins: one rate
    assert [sampled[epoch] for epoch in (1, 2, 3, 4)] == pytest.approx(rates)
    out = capsys.readouterr().out
    printed = [float(line.split()[-1]) for line in out.splitlines() if line.startswith("epoch ")]
    assert printed == pytest.approx(rates, rel=0.05)  # printed with two digits
    assert "Epoch 4: early stopping" in out  # Keras' own line: verbose early stopping
    assert "Restoring model weights from the end of the best epoch: 1." in out


def test_quick_mode_reads_the_environment(monkeypatch):
    monkeypatch.delenv("CIFAR_UTILS_QUICK", raising=False)
    assert quick_mode() is False
    for value, expected in [("1", True), ("true", True), ("YES", True), ("0", False),
                            ("no", False), ("", False), (" 1 ", True)]:
        monkeypatch.setenv("CIFAR_UTILS_QUICK", value)
        assert quick_mode() is expected, value
    monkeypatch.setenv("CIFAR_UTILS_QUICK", "fast")
    with pytest.raises(ValueError, match="set it to 1 for quick mode"):
        quick_mode()


def test_quick_mode_is_the_setup_cells_value_unless_the_environment_says_otherwise(monkeypatch):
    """A student switches quick mode on with one edit, `cu.quick_mode(True)`; tests and
    `CIFAR_UTILS_QUICK=0/1` still decide when they set the variable."""
    monkeypatch.delenv("CIFAR_UTILS_QUICK", raising=False)
    assert quick_mode(True) is True and quick_mode(False) is False
    monkeypatch.setenv("CIFAR_UTILS_QUICK", "0")
    assert quick_mode(True) is False
    monkeypatch.setenv("CIFAR_UTILS_QUICK", "1")
    assert quick_mode(False) is True


def test_format_duration_picks_seconds_or_minutes():
    assert format_duration(45.4) == "45 s" and format_duration(119) == "119 s"
    assert format_duration(150) == "2.5 min" and format_duration(2628) == "43.8 min"
