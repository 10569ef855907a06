"""Metrics against hand-computed values; every plot returns a figure and saves a PNG."""

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from cifar_utils import plots
from cifar_utils.data import CLASS_NAMES
from cifar_utils.metrics import (
    accuracy,
    classification_table,
    confusion_matrix,
    evaluate,
    mirror_helps,
)
from cifar_utils.training import TrainingLog


@pytest.fixture(autouse=True)
def close_figures():
    """Figures stay open in pyplot until closed: close each test's, as a notebook would."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
Y_PRED = np.array([0, 0, 1, 1, 2, 2])
NAMES = ("a", "b", "c")


def test_accuracy_and_confusion_matrix():
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(4 / 6)
    assert confusion_matrix(Y_TRUE, Y_PRED, 3).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    with pytest.raises(ValueError, match="6 labels but 5 predictions"):
        accuracy(Y_TRUE, Y_PRED[:5])


def test_classification_table_by_hand_in_percent():
    table = classification_table(Y_TRUE, Y_PRED, NAMES)
    assert list(table.index) == ["a", "b", "c", "mean (all classes)"]
    assert list(table.columns) == ["precision %", "recall %", "F1 %", "images"]
    assert table.loc["a"].tolist() == [100.0, 66.7, 80.0, 3]
    assert table.loc["b"].tolist() == [50.0, 50.0, 50.0, 2]
    assert table.loc["c", "precision %"] == 50.0 and table.loc["c", "recall %"] == 100.0
    assert table.loc["mean (all classes)", "images"] == 6


def test_class_with_no_predictions_gets_zero_precision():
    table = classification_table([0, 1], [0, 0], ("a", "b"))
    assert table.loc["b", "precision %"] == 0.0 and table.loc["b", "F1 %"] == 0.0


@pytest.fixture
def predictions(images):
    x, y = images
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(10), size=len(y))
    return x, y, probs


def test_every_plot_returns_a_figure(predictions):
    x, y, probs = predictions
    y_pred = probs.argmax(1)
    history = {"loss": [2.0, 1.5], "accuracy": [0.3, 0.5],
               "val_loss": [1.8, 1.6], "val_accuracy": [0.35, 0.45]}
    results = pd.DataFrame({"model": ["m1", "m2"], "test_accuracy": [0.7, 0.8],
                            "train_seconds": [90.0, 2628.0]})
    figures = [
        plots.plot_class_examples(x, y, per_class=2),
        plots.plot_history(history),
        plots.plot_history({"classic": history, "improved": history}, title="compare"),
        plots.plot_confusion_matrix(y, y_pred),
        plots.plot_confusion_matrix(y, y_pred, normalize=False),
        plots.plot_predictions(x, y, y_pred, n=8),
        plots.plot_confident_mistakes(x, y, probs, n=6),
        plots.plot_comparison(results),
        plots.plot_comparison(results, metric="train_seconds"),
    ]
    assert all(isinstance(fig, Figure) for fig in figures)


def test_history_overlay_draws_every_run():
    history = {"loss": [1.0, 0.5], "accuracy": [0.5, 0.7], "val_loss": [1, 1], "val_accuracy": [1, 1]}
    fig = plots.plot_history({f"run {i}": history for i in range(12)})
    assert len(fig.axes[0].lines) == 24  # train and validation for each of 12 runs
    with pytest.raises(TypeError, match="cannot read training history 'bad'"):
        plots.plot_history({"bad": [1, 2, 3]})


def test_history_has_integer_epochs_percent_accuracy_and_the_learning_rate():
    history = {"loss": [1.0, 0.5, 0.4], "accuracy": [0.5, 0.7, 0.8]}
    run = TrainingLog()  # as `model.fit` leaves it
    run.history, run.epoch_seconds = history, [1, 1, 1]
    run.learning_rates = [(0.0, 1e-4), (0.5, 1e-3), (1.0, 9e-4), (2.5, 1e-5)]
    fig = plots.plot_history({"ours": run, "plain": history})
    loss, acc, lr = fig.axes
    fig.canvas.draw()
    assert all(float(t).is_integer() for t in loss.get_xticks())
    assert acc.yaxis.get_major_formatter().format_data(0.5) == "50%"
    assert lr.get_ylabel() == "learning rate" and len(lr.lines) == 1
    assert lr.lines[0].get_xdata().tolist() == [0.0, 0.5, 1.0, 2.5]  # epochs trained so far
    assert loss.lines[0].get_xdata().tolist() == [1, 2, 3]  # measured after each epoch
    assert len(plots.plot_history(history).axes) == 2  # nothing recorded, no empty panel


def test_class_examples_label_every_row_legibly(images):
    x, y = images
    fig = plots.plot_class_examples(x, y, per_class=2)
    rows = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert rows == list(CLASS_NAMES)
    width_inches = fig.get_size_inches()[0]
    # at 900 px across, a 13-point label is 13 / 72 * 900 / width_inches px tall
    sizes = [ax.yaxis.label.get_fontsize() for ax in fig.axes if ax.get_ylabel()]
    assert min(sizes) / 72 * 900 / width_inches >= 10


def test_time_comparison_reads_in_minutes_and_says_what_it_includes():
    results = pd.DataFrame({"model": ["a", "b"], "train_seconds": [90.0, 2628.0]})
    ax = plots.plot_comparison(results, metric="train_seconds").axes[0]
    assert [t.get_text() for t in ax.texts] == ["1.5 min", "43.8 min"]
    assert "minutes" in ax.get_xlabel() and "frozen stage" in ax.get_xlabel()


def test_confusion_matrix_annotations_are_row_percentages():
    y_true = np.array([0, 0, 0, 0, 1])
    y_pred = np.array([0, 0, 0, 1, 1])
    fig = plots.plot_confusion_matrix(y_true, y_pred, class_names=("a", "b"))
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["75", "25", "0", "100"]
    counts = plots.plot_confusion_matrix(y_true, y_pred, ("a", "b"), normalize=False)
    assert [t.get_text() for t in counts.axes[0].texts] == ["3", "1", "0", "1"]


def test_confident_mistakes_are_sorted_by_confidence(predictions):
    x, y, probs = predictions
    fig = plots.plot_confident_mistakes(x, y, probs, n=3)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    shown = [int(t.split()[1].rstrip("%")) for t in titles]
    assert shown == sorted(shown, reverse=True) and len(shown) == 3
    assert all("(true: " in t for t in titles)
    assert all(t.split()[0] in CLASS_NAMES for t in titles)


def test_predictions_grid_marks_mistakes_in_red(images):
    x, y = images
    y_pred = y.copy()
    y_pred[:] = (y + 1) % 10
    fig = plots.plot_predictions(x, y, y_pred, n=4)
    assert {ax.title.get_color() for ax in fig.axes if ax.get_title()} == {"red"}


def test_plot_evaluation_draws_notebook_01s_three_views(images, tmp_path):
    from cifar_utils.data import LabelledImages
    from cifar_utils.metrics import Evaluation
    from cifar_utils.results import Recorder

    x, y = images
    probabilities = np.random.default_rng(0).dirichlet(np.ones(10), size=len(y))
    evaluation = Evaluation(probabilities, probabilities.argmax(1), 0.1, 2.3)
    figures = plots.plot_evaluation(LabelledImages(x, y), evaluation, seed=1)
    assert list(figures) == ["confusion_matrix", "predictions", "confident_mistakes"]
    assert all(isinstance(fig, Figure) for fig in figures.values())
    expected = plots.plot_confusion_matrix(y, evaluation.predictions)
    assert [t.get_text() for t in figures["confusion_matrix"].axes[0].texts] == \
        [t.get_text() for t in expected.axes[0].texts]
    shown = [ax for ax in figures["predictions"].axes if ax.get_title()]
    assert len(shown) == 24  # a grid of 24 test images
    again = plots.plot_predictions(x, y, evaluation.predictions, n=24, seed=1)  # the seed given
    assert [ax.get_title() for ax in again.axes] == [ax.get_title() for ax in figures["predictions"].axes]
    mistakes = [ax.get_title() for ax in figures["confident_mistakes"].axes if ax.get_title()]
    assert len(mistakes) == 16 and all("(true: " in title for title in mistakes)
    recorder = Recorder("03_mobilenetv2_finetune", None, tmp_path / "out")
    for name, fig in figures.items():
        recorder.save_figure(fig, name)
    assert sorted(p.name for p in recorder.folders.figures.iterdir()) == [
        "03_confident_mistakes.png", "03_confusion_matrix.png", "03_predictions.png"]


def test_save_figure_writes_a_readable_png(tmp_path):
    fig = plots.plot_history({"loss": [1, 0.5], "accuracy": [0.5, 0.7]})
    path = plots.save_figure(fig, "curves", tmp_path / "figures")
    assert path == tmp_path / "figures" / "curves.png"
    height, width, _ = matplotlib.image.imread(path).shape
    assert 800 <= width <= 1400 and height > 200


class FixedModel:
    """Stands in for a Keras model: `predict` returns fixed probabilities."""

    def __init__(self, probabilities):
        self.probabilities = np.asarray(probabilities)

    def predict(self, data, batch_size=None, verbose=0):
        return self.probabilities


def test_evaluate_matches_keras_cross_entropy():
    import keras

    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.5, 0.4, 0.1], [0.0, 1.0, 0.0]])
    labels = np.array([0, 2, 1, 0])
    result = evaluate(FixedModel(probs), np.zeros((4, 1)), labels)
    assert result.predictions.tolist() == [0, 2, 0, 1] and result.accuracy == 0.5
    expected = keras.losses.SparseCategoricalCrossentropy()(labels, probs)
    assert result.loss == pytest.approx(float(expected), rel=1e-4)
    with pytest.raises(ValueError, match="4 predictions for 3 labels"):
        evaluate(FixedModel(probs), np.zeros((4, 1)), labels[:3])


class MirrorAwareModel:
    """Predicts class 0 for images whose first column is 0 and class 1 otherwise."""

    def predict(self, data, batch_size=None, verbose=0):
        first = data[:, 0, 0]
        return np.stack([np.where(first == 0, 0.9, 0.05), np.where(first == 0, 0.1, 0.95)], axis=1)


def test_evaluate_averages_the_mirrored_view():
    images = np.zeros((2, 1, 2))
    images[0, 0, 1] = 1.0  # mirrored, image 0 has a 1 in its first column
    labels = np.array([1, 0])
    plain = evaluate(MirrorAwareModel(), images, labels)
    both = evaluate(MirrorAwareModel(), images, labels, mirrored=images[:, :, ::-1])
    assert plain.probabilities[0].tolist() == pytest.approx([0.9, 0.1])
    assert both.probabilities[0].tolist() == pytest.approx([0.475, 0.525])
    assert both.probabilities[1].tolist() == pytest.approx([0.9, 0.1])
    assert plain.accuracy == 0.5 and both.accuracy == 1.0
    with pytest.raises(ValueError, match="1 mirrored predictions for 2 images"):
        evaluate(MirrorAwareModel(), images, labels, mirrored=images[:1, :, ::-1])


def test_mirror_helps_decides_on_the_given_split_and_says_so(capsys):
    images = np.zeros((2, 1, 2))
    images[0, 0, 1] = 1.0
    labels = np.array([1, 0])
    assert mirror_helps(MirrorAwareModel(), images, images[:, :, ::-1], labels) is True
    assert capsys.readouterr().out == ("Validation accuracy: 50.00% from the images alone, "
                                       "100.00% with mirror averaging (+50.00 points), so "
                                       "mirror averaging is on.\n")
    assert mirror_helps(MirrorAwareModel(), images, images, labels) is False  # a tie: off
    assert "mirror averaging is off" in capsys.readouterr().out


def series_results():
    """Two trained models, and the Keras and LiteRT variants of the second one."""
    trained = pd.DataFrame({"run": ["01_a", "03_b"], "model": ["A", "B"],
                            "test_accuracy": [0.76, 0.88], "train_seconds": [600.0, 4200.0]})
    variants = pd.DataFrame({
        "run": [f"04_b_{v}" for v in ("keras", "float32", "int8")],
        "model": ["B (Keras)", "B (LiteRT float32)", "B (LiteRT int8)"],
        "test_accuracy": [0.88, 0.88, 0.875], "train_seconds": [4200.0] * 3,
        "variant": ["keras", "float32", "int8"], "source_run": ["03_b"] * 3,
        "megabytes": [30.0, 9.0, 2.6], "median_ms_2_threads": [np.nan, 6.0, 4.0],
        "median_ms_tf_threads": [40.0, np.nan, np.nan]})
    return pd.concat([trained, variants], ignore_index=True)


def test_tradeoffs_place_each_model_once_by_training_time_and_each_variant_by_size_and_latency():
    fig = plots.plot_tradeoffs(series_results())
    time, size, latency = fig.axes
    points = [np.concatenate([c.get_offsets() for c in ax.collections]) for ax in fig.axes]
    assert points[0].tolist() == [[10.0, 0.76], [70.0, 0.88]]  # minutes; variants not repeated
    assert sorted(points[1][:, 0]) == [2.6, 9.0, 30.0]
    assert sorted(points[2][:, 0]) == [4.0, 6.0, 40.0]  # the Keras model at TensorFlow's threads
    colors = {tuple(c.get_facecolor()[0]) for ax in (size, latency) for c in ax.collections}
    assert colors == {tuple(time.collections[1].get_facecolor()[0])}  # B's colour throughout
    legends = [[t.get_text() for t in legend.get_texts()] for legend in fig.legends]
    assert legends == [["A", "B"], ["Keras (TensorFlow's threads)", "LiteRT float32", "LiteRT int8"]]
    assert size.get_xscale() == latency.get_xscale() == "log"
    assert "LiteRT on 2 threads" in latency.get_xlabel()  # the thread count it plots


def test_tradeoffs_name_the_selective_variant_a_mixed_int8_float_model():
    results = series_results()
    mixed = results.iloc[[-1]].assign(run="04_b_int8_selective", variant="int8_selective")
    fig = plots.plot_tradeoffs(pd.concat([results, mixed], ignore_index=True))
    assert [t.get_text() for t in fig.legends[1].get_texts()][-1] == "LiteRT mixed int8/float"


def test_tradeoffs_of_trained_models_only():
    fig = plots.plot_tradeoffs(series_results().iloc[:2].drop(columns=["variant"]))
    assert [len(ax.collections) for ax in fig.axes] == [2, 0, 0] and len(fig.legends) == 1


def test_grad_cam_grid_shows_the_image_then_each_models_overlay(images):
    x, y = images
    x, y = x[:3], y[:3]
    heatmaps = np.random.default_rng(0).uniform(size=(3, 4, 4))
    right = np.eye(10)[y] * 0.9 + 0.01
    wrong = np.eye(10)[(y + 1) % 10] * 0.9 + 0.01
    fig = plots.plot_grad_cam(x, y, {"cnn": (heatmaps, right), "mobilenet": (heatmaps, wrong)})
    assert len(fig.axes) == 3 * 3
    first_row = fig.axes[:3]
    assert first_row[0].get_title() == f"true: {CLASS_NAMES[y[0]]}"
    assert first_row[1].get_title() == f"cnn:\n{CLASS_NAMES[y[0]]} 91%"
    assert first_row[1].title.get_color() == "black" and first_row[2].title.get_color() == "red"
    assert len(first_row[1].images) == 2  # the image, and the heatmap over it
    image, overlay = first_row[1].images
    np.testing.assert_array_equal(overlay.get_array(), heatmaps[0])  # the 4x4 map itself,
    assert overlay.get_extent() == image.get_extent()  # stretched over the 32x32 image
