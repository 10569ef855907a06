"""Figures for the notebooks: examples, training curves, confusion matrices, predictions.

Every function returns a matplotlib `Figure` (shown inline in Jupyter) sized to be
readable on GitHub, and `save_figure` writes it into `figures/` for the README.
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
            ax.imshow(images[i])
            ax.set_title(titles[i], fontsize=8, color=(colors[i] if colors else "black"))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_class_examples(x, y, class_names=CLASS_NAMES, per_class=8, seed=0):
    """A grid with one row per class and `per_class` random example images."""
    rng = np.random.default_rng(seed)
    images, titles = [], []
    for label, name in enumerate(class_names):
        picks = rng.choice(np.flatnonzero(y == label), size=per_class, replace=False)
        images += list(x[picks])
        titles += [name] + [""] * (per_class - 1)
    return _image_grid(images, titles, columns=per_class)


def plot_history(runs, title=None):
    """Loss and accuracy per epoch, training (dashed) and validation (solid).

    `runs` is one history (a dict of metric lists, a `keras.callbacks.History` or a
    `training.TrainingRun`) or a dict `{label: history}` to compare several runs.
    """
    plt = _pyplot()
    if _as_metrics(runs) is not None:
        runs = {"": runs}
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    colors = itertools.cycle(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    for (label, run), color in zip(runs.items(), colors, strict=False):
        metrics = _as_metrics(run)
        if metrics is None:
            raise TypeError(f"cannot read training history {label!r} of type {type(run).__name__}")
        for ax, name in zip(axes, ("loss", "accuracy"), strict=True):
            epochs = np.arange(1, len(metrics[name]) + 1)
            ax.plot(epochs, metrics[name], "--", color=color, alpha=0.7,
                    label=f"{label} train".strip())
            if f"val_{name}" in metrics:
                ax.plot(epochs, metrics[f"val_{name}"], "-", color=color,
                        label=f"{label} validation".strip())
    for ax, name in zip(axes, ("loss", "accuracy"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
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
    """Horizontal bar chart of `metric` for each row of a results DataFrame."""
    from matplotlib.ticker import PercentFormatter

    plt = _pyplot()
    ordered = results.sort_values(metric)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(ordered) + 1.2))
    bars = ax.barh(ordered[label].astype(str), ordered[metric], color="tab:blue")
    ax.bar_label(bars, labels=[f"{v:.1%}" if metric.endswith("accuracy") else f"{v:,.3g}"
                               for v in ordered[metric]], padding=3, fontsize=9)
    ax.set_xlabel(metric.replace("_", " "))
    ax.set_xlim(0, ordered[metric].max() * 1.15)
    if metric.endswith("accuracy"):
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def save_figure(fig, name, directory="figures", dpi=110):
    """Save `fig` as `<directory>/<name>.png` (about 800-1200 px wide) and return the path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{Path(name).stem}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight", facecolor="white")
    return path
