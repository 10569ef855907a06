"""Figures for the notebooks: examples, training curves, confusion matrices, predictions.

Every function returns a matplotlib `Figure` (shown inline in Jupyter) sized to be
readable on GitHub. Notebooks save them with `Recorder.save_figure`, which calls
`save_figure` with the notebook's number in the file name.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from .data import CLASS_NAMES
from .metrics import confusion_matrix


def _pyplot():
    # Imported on first use: importing pyplot can build matplotlib's font cache.
    import matplotlib.pyplot as plt

    return plt


def _image_grid(images, titles, colors=None, columns=8, title=None):
    plt = _pyplot()
    rows = int(np.ceil(len(images) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.45 * columns, 1.9 * rows + 0.4),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i], interpolation="nearest")
            ax.set_title(titles[i], fontsize=8, color=(colors[i] if colors else "black"))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_class_examples(x, y, class_names=CLASS_NAMES, per_class=8, seed=0):
    """A grid with one labelled row per class and `per_class` random example images."""
    plt = _pyplot()
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(class_names), per_class,
                             figsize=(0.9 * per_class + 1.3, 0.9 * len(class_names)),
                             squeeze=False)
    for label, (name, row) in enumerate(zip(class_names, axes, strict=True)):
        picks = rng.choice(np.flatnonzero(y == label), size=per_class, replace=False)
        for ax, image in zip(row, x[picks], strict=True):
            ax.imshow(image, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        row[0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=13)
    fig.subplots_adjust(left=0.16, right=0.99, top=0.99, bottom=0.01, wspace=0.05, hspace=0.05)
    return fig


def plot_history(runs, title=None):
    """Loss, accuracy and learning rate per epoch, training (dashed) and validation (solid).

    The x axis counts epochs trained: epoch k's metrics stand at k, and the learning
    rate is drawn along the way (0 is the start of training).

    `runs` is one history (a dict of metric lists, a `keras.callbacks.History` or a
    `training.TrainingRun`) or a dict `{label: history}` to compare several runs. The
    learning-rate panel needs `TrainingRun`s (they record it); it shows a warm-up, a
    decay or a reduce-on-plateau step at a glance.
    """
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    plt = _pyplot()
    if _as_metrics(runs) is not None:
        runs = {"": runs}
    with_lr = any(getattr(run, "learning_rates", None) for run in runs.values())
    fig, axes = plt.subplots(1, 3 if with_lr else 2, figsize=(15 if with_lr else 11, 3.8))
    colors = itertools.cycle(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    longest = 1
    for (label, run), color in zip(runs.items(), colors, strict=False):
        metrics = _as_metrics(run)
        if metrics is None:
            raise TypeError(f"cannot read training history {label!r} of type {type(run).__name__}")
        for ax, name in zip(axes, ("loss", "accuracy"), strict=False):
            epochs = np.arange(1, len(metrics[name]) + 1)  # measured at the end of each epoch
            ax.plot(epochs, metrics[name], "--", marker=".", color=color, alpha=0.7,
                    label=f"{label} train".strip())
            if f"val_{name}" in metrics:
                ax.plot(epochs, metrics[f"val_{name}"], "-", marker="o", markersize=4,
                        color=color, label=f"{label} validation".strip())
            longest = max(longest, len(epochs))
        if with_lr and getattr(run, "learning_rates", None):
            position, rate = np.array(run.learning_rates).T
            axes[2].plot(position, rate, "-", color=color, label=label or None)
    for ax, name in zip(axes, ("loss", "accuracy", "learning rate"), strict=False):
        ax.set_xlabel("epochs trained")
        ax.set_ylabel(name)
        ax.set_xlim(0 if name == "learning rate" else 0.7, longest + 0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    axes[1].yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    if with_lr:
        axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _as_metrics(run):
    history = getattr(run, "history", run)
    if isinstance(history, dict) and "loss" in history and "accuracy" in history:
        return history
    return None


def plot_confusion_matrix(y_true, y_pred, class_names=CLASS_NAMES, normalize=True, title=None):
    """Confusion matrix as a heatmap: rows are true classes, columns predictions.

    `normalize=True` shows each row as percentages (the diagonal is per-class recall),
    which makes classes comparable; `normalize=False` shows raw counts.
    """
    import seaborn as sns

    plt = _pyplot()
    matrix = confusion_matrix(y_true, y_pred, len(class_names))
    if normalize:
        values = 100 * matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        fmt, label = ".0f", "% of true class"
    else:
        values, fmt, label = matrix, "d", "images"
    fig, ax = plt.subplots(figsize=(7.5, 6.2))
    sns.heatmap(values, annot=True, fmt=fmt, cmap="Blues", square=True, ax=ax,
                xticklabels=class_names, yticklabels=class_names,
                cbar_kws={"label": label, "shrink": 0.8}, annot_kws={"fontsize": 8})
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or ("Confusion matrix (row-normalised)" if normalize
                           else "Confusion matrix (counts)"))
    fig.tight_layout()
    return fig


def plot_predictions(x, y_true, y_pred, class_names=CLASS_NAMES, n=24, seed=0):
    """Random test images titled with the prediction; mistakes in red with the true class."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(x), size=min(n, len(x)), replace=False)
    titles, colors = [], []
    for i in picks:
        right = y_pred[i] == y_true[i]
        titles.append(class_names[y_pred[i]] if right
                      else f"{class_names[y_pred[i]]}\n(true: {class_names[y_true[i]]})")
        colors.append("black" if right else "red")
    return _image_grid(x[picks], titles, colors, title="Predictions (mistakes in red)")


def plot_confident_mistakes(x, y_true, probabilities, class_names=CLASS_NAMES, n=16):
    """The `n` wrong predictions the model was most sure of: where it is confidently wrong."""
    y_pred = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(y_pred != y_true)
    worst = wrong[np.argsort(-probabilities[wrong, y_pred[wrong]])][:n]
    titles = [f"{class_names[y_pred[i]]} {probabilities[i, y_pred[i]]:.0%}\n"
              f"(true: {class_names[y_true[i]]})" for i in worst]
    return _image_grid(x[worst], titles, ["red"] * len(worst),
                       title="Most confident mistakes")


def plot_comparison(results, metric="test_accuracy", label="model"):
    """Horizontal bar chart of one column of a results DataFrame, one bar per model.

    `metric="test_accuracy"` reads in percent; `metric="train_seconds"` is drawn in
    minutes, and the chart says what the time includes.
    """
    from matplotlib.ticker import PercentFormatter

    plt = _pyplot()
    ordered = results.sort_values(metric)
    values = ordered[metric].astype(float)
    if metric == "train_seconds":
        values = values / 60
        labels, xlabel = [f"{v:,.1f} min" for v in values], \
            "training time on this machine (minutes; includes feature extraction and " \
            "the frozen stage a model starts from)"
    elif metric.endswith("accuracy"):
        labels, xlabel = [f"{v:.1%}" for v in values], metric.replace("_", " ")
    else:
        labels, xlabel = [f"{v:,.4g}" for v in values], metric.replace("_", " ")
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(ordered) + 1.3))
    bars = ax.barh(ordered[label].astype(str), values, color="tab:blue")
    ax.bar_label(bars, labels=labels, padding=3, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_xlim(0, values.max() * 1.18)
    if metric.endswith("accuracy"):
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_grad_cam(images, labels, explanations, class_names=CLASS_NAMES, title=None):
    """One row per image: the image, then each model's Grad-CAM heatmap over it.

    `explanations` maps a model's name to `(heatmaps, probabilities)` from
    `gradcam.grad_cam` for these images. Each overlay is titled with the model's
    prediction and its probability, red when wrong; the first column gives the true class.
    """
    from .gradcam import upsample

    plt = _pyplot()
    names = list(explanations)
    rows, size = len(images), images.shape[1]
    fig, axes = plt.subplots(rows, len(names) + 1, figsize=(2.3 * (len(names) + 1), 2.3 * rows),
                             squeeze=False)
    for i, row in enumerate(axes):
        row[0].imshow(images[i], interpolation="nearest")
        row[0].set_title(f"true: {class_names[labels[i]]}", fontsize=10)
        for ax, name in zip(row[1:], names, strict=True):
            heatmaps, probabilities = explanations[name]
            predicted = int(probabilities[i].argmax())
            ax.imshow(images[i], interpolation="nearest")
            ax.imshow(upsample(heatmaps[i:i + 1], size)[0], cmap="jet", alpha=0.45,
                      vmin=0, vmax=1)
            ax.set_title(f"{name}:\n{class_names[predicted]} {probabilities[i, predicted]:.0%}",
                         fontsize=9, color="black" if predicted == labels[i] else "red")
        for ax in row:
            ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


VARIANT_MARKERS = {"keras": ("o", "Keras (TensorFlow's threads)"), "float32": ("s", "LiteRT float32"),
                   "float16": ("^", "LiteRT float16"), "dynamic": ("D", "LiteRT dynamic range"),
                   "int8": ("*", "LiteRT int8")}


def plot_tradeoffs(results):
    """Test accuracy against training time, file size and single-image latency.

    `results` is `load_results` of the whole series. Each trained model has one colour in
    all three panels; training time is known for every model, size and latency for the
    models notebook 04 exported, one marker per variant (the Keras model's latency uses
    TensorFlow's own threads, the LiteRT files 2 threads). Legends instead of labels:
    the variants of one model sit too close together to label.
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, PercentFormatter

    plt = _pyplot()
    if "variant" in results:
        trained, exported = results[results["variant"].isna()], results[results["variant"].notna()]
    else:
        trained, exported = results, results.iloc[:0]
    colors = {run: f"C{i}" for i, run in enumerate(trained["run"])}
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.2), sharey=True)
    for _, row in trained.iterrows():
        axes[0].scatter(row["train_seconds"] / 60, row["test_accuracy"], s=50,
                        color=colors[row["run"]])
    for _, row in exported.iterrows():
        marker, _ = VARIANT_MARKERS[row["variant"]]
        style = dict(marker=marker, s=90 if marker == "*" else 50,
                     color=colors.get(row["source_run"], "gray"), edgecolor="black",
                     linewidth=0.5)
        latency = row.get("median_ms_2_threads")
        if latency is None or np.isnan(latency):  # the Keras model: TensorFlow's threads
            latency = row.get("median_ms_tf_threads")
        axes[1].scatter(row["megabytes"], row["test_accuracy"], **style)
        axes[2].scatter(latency, row["test_accuracy"], **style)
    labels = ["training time on this machine (minutes)", "model file size (MB)",
              "single-image latency on this machine (ms, median)"]
    for ax, label in zip(axes, labels, strict=True):
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    for ax in axes[1:]:  # log scales, labelled 1, 2, 5, 10, 20, ... rather than 10^0
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0].set_ylabel("test accuracy")
    axes[0].yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    models = [Line2D([], [], linestyle="", marker="o", color=colors[run], label=name)
              for run, name in zip(trained["run"], trained["model"], strict=True)]
    shown = [v for v in VARIANT_MARKERS if v in set(exported.get("variant", ()))]
    variants = [Line2D([], [], linestyle="", marker=VARIANT_MARKERS[v][0], color="white",
                       markeredgecolor="black", label=VARIANT_MARKERS[v][1]) for v in shown]
    fig.legend(handles=models, loc="lower center", ncol=3, bbox_to_anchor=(0.5, 0.06),
               frameon=False)
    if variants:
        fig.legend(handles=variants, loc="lower center", ncol=len(variants),
                   bbox_to_anchor=(0.5, -0.01), frameon=False)
    fig.tight_layout(rect=(0, 0.17, 1, 1))
    return fig


def save_figure(fig, name, directory="figures", dpi=110):
    """Save `fig` as `<directory>/<name>.png` (about 800-1200 px wide) and return the path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{Path(name).stem}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight", facecolor="white")
    return path
