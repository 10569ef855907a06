"""Seeding, compiling, callbacks and the quiet timed fit."""

import re

import keras
import numpy as np
import pytest

from cifar_utils.training import (
    TrainingRun,
    compile_classifier,
    cosine_schedule,
    device_name,
    fit,
    format_duration,
    set_seed,
    standard_callbacks,
    validation_accuracy,
)


def tiny_model():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])


def tiny_data(n=60):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0)


def test_set_seed_makes_initialisation_repeatable():
    set_seed(3)
    first = tiny_model().get_weights()[0]
    set_seed(3)
    assert np.array_equal(first, tiny_model().get_weights()[0])
    set_seed(4)
    assert not np.array_equal(first, tiny_model().get_weights()[0])


def test_compile_classifier_picks_the_optimizer():
    model = compile_classifier(tiny_model(), 1e-3, clipnorm=1.0)
    assert isinstance(model.optimizer, keras.optimizers.Adam) and model.optimizer.clipnorm == 1.0
    model = compile_classifier(tiny_model(), 1e-3, weight_decay=1e-4)
    assert isinstance(model.optimizer, keras.optimizers.AdamW)


def test_standard_callbacks():
    kinds = [type(c).__name__ for c in standard_callbacks(checkpoint_path="best.keras")]
    assert kinds == ["EarlyStopping", "ReduceLROnPlateau", "ModelCheckpoint"]
    assert [type(c).__name__ for c in standard_callbacks(reduce_lr_patience=0)] == ["EarlyStopping"]
    assert standard_callbacks(patience=3)[0].restore_best_weights


def test_fit_prints_one_line_per_epoch_and_times_them(capsys):
    set_seed(0)
    model = compile_classifier(tiny_model(), 0.05)
    x, y = tiny_data()
    run = fit(model, (x, y), (x, y), epochs=3, batch_size=16)
    lines = capsys.readouterr().out.splitlines()
    assert isinstance(run, TrainingRun) and run.epochs == 3 and len(run.epoch_seconds) == 3
    assert sum(run.epoch_seconds) <= run.seconds
    assert set(run.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert [line.split()[:2] for line in lines[:3]] == [["epoch", "1/3"], ["epoch", "2/3"],
                                                       ["epoch", "3/3"]]
    assert "val_acc" in lines[0] and "lr 5.0e-02" in lines[0]
    assert re.search(r" acc \d+\.\d\d% ", lines[0]), "accuracies read in percent"
    assert lines[-1].startswith("Training took")
    assert len(lines) == 4  # no progress bars


def test_fit_reports_early_stopping(capsys):
    model = compile_classifier(tiny_model(), 0.0)  # learning rate 0: never improves
    x, y = tiny_data()
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    run = fit(model, (x, y), (x, y), epochs=10, callbacks=[stop])
    out = capsys.readouterr().out
    assert run.epochs == 2
    assert "Early stopping after epoch 2." in out
    assert "Weights restored from epoch 1, the best (val_loss" in out


def test_fit_reports_weights_restored_after_a_full_run(capsys):
    set_seed(0)
    model = compile_classifier(tiny_model(), 0.05)
    x, y = tiny_data()
    # "Best" is the highest training loss, i.e. the first epoch: Keras restores it at the
    # end although training never stopped early.
    keep_first = keras.callbacks.EarlyStopping(monitor="loss", mode="max", patience=10,
                                               restore_best_weights=True)
    run = fit(model, (x, y), epochs=3, batch_size=16, callbacks=[keep_first])
    out = capsys.readouterr().out
    assert run.epochs == 3 and run.history["loss"][0] > run.history["loss"][-1]
    assert "Early stopping" not in out and "Weights restored from epoch 1, the best (loss" in out


def test_fit_says_nothing_when_the_last_epoch_is_the_best(capsys):
    set_seed(0)
    model = compile_classifier(tiny_model(), 0.05)
    x, y = tiny_data()
    fit(model, (x, y), epochs=3, batch_size=16, callbacks=standard_callbacks(monitor="loss", reduce_lr_patience=0))
    assert "restored" not in capsys.readouterr().out


def test_device_name_on_this_machine():
    assert device_name() == "CPU" or device_name().startswith("GPU (")


def test_quick_mode_reads_the_environment(monkeypatch):
    from cifar_utils.training import quick_mode

    monkeypatch.delenv("CIFAR_UTILS_QUICK", raising=False)
    assert quick_mode() is False
    for value, expected in [("1", True), ("true", True), ("0", False), ("", False)]:
        monkeypatch.setenv("CIFAR_UTILS_QUICK", value)
        assert quick_mode() is expected
    monkeypatch.setenv("CIFAR_UTILS_QUICK", "fast")
    with pytest.raises(ValueError, match="set it to 1 for quick mode"):
        quick_mode()


def test_cosine_schedule_warms_up_then_decays_to_zero():
    from cifar_utils.training import cosine_schedule

    schedule = cosine_schedule(0.1, epochs=10, steps_per_epoch=100, warmup_epochs=1)
    rates = [float(schedule(step)) for step in (0, 50, 100, 550, 1000)]
    assert rates[0] == pytest.approx(0.001) and rates[1] < rates[2]
    assert rates[2] == pytest.approx(0.1) and 0.04 < rates[3] < 0.06
    assert rates[4] == pytest.approx(0.0, abs=1e-6)


def test_fit_on_a_dataset_raises_no_warning(capsys):
    import warnings

    from cifar_utils.preprocessing import make_dataset

    model = compile_classifier(tiny_model(), 0.01)
    x, y = tiny_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = fit(model, make_dataset(x, y, batch_size=16, shuffle=True, seed=0), epochs=1)
    assert [str(w.message) for w in caught] == []
    assert run.epochs == 1 and "(1 epoch)." in capsys.readouterr().out


def test_fit_records_the_learning_rate_within_each_epoch(capsys):
    model = tiny_model()
    x, y = tiny_data(n=80)
    schedule = cosine_schedule(0.1, epochs=2, steps_per_epoch=20, warmup_epochs=1)
    compile_classifier(model, learning_rate=schedule)
    run = fit(model, (x, y), epochs=2, batch_size=4)  # 20 steps per epoch
    positions = [position for position, _ in run.learning_rates]
    rates = [rate for _, rate in run.learning_rates]
    assert positions[0] == 0 and positions[1] == 0.1 and positions[-1] == 2
    assert len([p for p in positions if p < 1]) == 10  # every other step of 20
    assert rates[0] == pytest.approx(0.001) and rates[1] > rates[0]  # the warm-up shows
    assert rates[-1] < max(rates)  # and the decay


def test_format_duration_picks_seconds_or_minutes():
    assert format_duration(45.4) == "45 s" and format_duration(119) == "119 s"
    assert format_duration(150) == "2.5 min" and format_duration(2628) == "43.8 min"


def test_validation_accuracy_trains_quietly_and_scores_the_validation_split(capsys):
    from cifar_utils.features import FeatureSplit

    set_seed(0)
    x, y = tiny_data(n=200)
    features = type("Features", (), {"train": FeatureSplit(x[:150], y[:150]),
                                     "val": FeatureSplit(x[150:], y[150:])})()
    head = tiny_model()
    score = validation_accuracy(head, features, epochs=20, learning_rate=0.05)
    assert score == np.mean(head.predict(x[150:], verbose=0).argmax(1) == y[150:])
    assert score > 0.5  # well above chance (1/3): it learned
    assert capsys.readouterr().out == ""
