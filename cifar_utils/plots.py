"""Every figure of the notebooks, each returned as a matplotlib `Figure` readable on GitHub."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from .data import CLASS_NAMES
from .metrics import confusion_matrix


def _pyplot():
    import matplotlib.pyplot as plt  # on first use: importing pyplot can build the font cache
    return plt


def _finish(fig, title=None):
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _image_grid(images, titles, colors=None, columns=8, title=None):
    rows = int(np.ceil(len(images) / columns))
    fig, axes = _pyplot().subplots(rows, columns, figsize=(1.45 * columns, 1.9 * rows + 0.4),
                                   squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i], interpolation="nearest")
            ax.set_title(titles[i], fontsize=8, color=(colors[i] if colors else "black"))
    return _finish(fig, title)


def plot_class_examples(x, y, class_names=CLASS_NAMES, per_class=8, seed=0):
    """A grid with one labelled row per class and `per_class` random example images."""
    rng = np.random.default_rng(seed)
    fig, axes = _pyplot().subplots(len(class_names), per_class, squeeze=False,
                                   figsize=(0.9 * per_class + 1.3, 0.9 * len(class_names)))
    for label, (name, row) in enumerate(zip(class_names, axes, strict=True)):
        picks = rng.choice(np.flatnonzero(y == label), size=per_class, replace=False)
        for ax, image in zip(row, x[picks], strict=True):
            ax.imshow(image, interpolation="nearest")
            ax.set(xticks=[], yticks=[])
            ax.spines[:].set_visible(False)
        row[0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=13)
    fig.subplots_adjust(left=0.16, right=0.99, top=0.99, bottom=0.01, wspace=0.05, hspace=0.05)
    return fig


def plot_history(runs, title=None):
    """Loss, accuracy and learning rate per epoch trained, training dashed, validation solid.
    `runs`: one history (a dict of metric lists, a Keras `History` or a `TrainingLog`, which
    records the learning rate too: a warm-up or decay shows at a glance) or `{label: history}`."""
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
            position, rate = np.array(run.learning_rates).T  # position 0: start of training
            axes[2].plot(position, rate, "-", color=color, label=label or None)
    for ax, name in zip(axes, ("loss", "accuracy", "learning rate"), strict=False):
        ax.set(xlabel="epochs trained", ylabel=name,
               xlim=(0 if name == "learning rate" else 0.7, longest + 0.3))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    axes[1].yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    if with_lr:
        axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    return _finish(fig, title)


def _as_metrics(run):
    history = getattr(run, "history", run)
    return history if isinstance(history, dict) and {"loss", "accuracy"} <= history.keys() else None


def plot_confusion_matrix(y_true, y_pred, class_names=CLASS_NAMES, normalize=True, title=None):
    """Confusion matrix heatmap, rows true classes; `normalize` shows row percentages, which make
    classes comparable (the diagonal is per-class recall), else counts."""
    import seaborn as sns
    matrix = confusion_matrix(y_true, y_pred, len(class_names))
    if normalize:
        values = 100 * matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        fmt, label = ".0f", "% of true class"
    else:
        values, fmt, label = matrix, "d", "images"
    fig, ax = _pyplot().subplots(figsize=(7.5, 6.2))
    sns.heatmap(values, annot=True, fmt=fmt, cmap="Blues", square=True, ax=ax,
                xticklabels=class_names, yticklabels=class_names,
                cbar_kws={"label": label, "shrink": 0.8}, annot_kws={"fontsize": 8})
    ax.set(xlabel="predicted class", ylabel="true class", title=title or (
        "Confusion matrix (row-normalised)" if normalize else "Confusion matrix (counts)"))
    return _finish(fig)


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
    return _image_grid(x[worst], titles, ["red"] * len(worst), title="Most confident mistakes")


def plot_evaluation(test, evaluation, *, seed=0) -> dict:
    """Notebook 01's three figures of a test `evaluation`, by name, for the later notebooks."""
    return {"confusion_matrix": plot_confusion_matrix(test.labels, evaluation.predictions),
            "predictions": plot_predictions(*test, evaluation.predictions, n=24, seed=seed),
            "confident_mistakes": plot_confident_mistakes(*test, evaluation.probabilities)}


def plot_comparison(results, metric="test_accuracy", label="model"):
    """One results column as horizontal bars, one per model; accuracy in %, `train_seconds` in
    minutes (the axis says what the time includes)."""
    from matplotlib.ticker import PercentFormatter
    ordered = results.sort_values(metric)
    values = ordered[metric].astype(float)
    if metric == "train_seconds":
        values = values / 60
        labels = [f"{v:,.1f} min" for v in values]
        xlabel = ("training time on this machine (minutes; includes feature extraction and "
                  "the frozen stage a model starts from)")
    else:
        fmt = "{:.1%}" if metric.endswith("accuracy") else "{:,.4g}"
        labels, xlabel = [fmt.format(v) for v in values], metric.replace("_", " ")
    fig, ax = _pyplot().subplots(figsize=(9, 0.45 * len(ordered) + 1.3))
    bars = ax.barh(ordered[label].astype(str), values, color="tab:blue")
    ax.bar_label(bars, labels=labels, padding=3, fontsize=9)
    ax.set(xlabel=xlabel, xlim=(0, values.max() * 1.18))
    if metric.endswith("accuracy"):
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(axis="x", alpha=0.3)
    return _finish(fig)


def plot_grad_cam(images, labels, explanations, class_names=CLASS_NAMES, title=None):
    """One row per image: the image and its true class, then each model's Grad-CAM over it,
    titled with its prediction and probability, red when wrong; `explanations` maps each
    model's name to `(heatmaps, probabilities)` for these images."""
    names, rows, size = list(explanations), len(images), images.shape[1]
    fig, axes = _pyplot().subplots(rows, len(names) + 1, squeeze=False,
                                   figsize=(2.3 * (len(names) + 1), 2.3 * rows))
    for i, row in enumerate(axes):
        row[0].imshow(images[i], interpolation="nearest")
        row[0].set_title(f"true: {class_names[labels[i]]}", fontsize=10)
        for ax, name in zip(row[1:], names, strict=True):
            heatmaps, probabilities = explanations[name]
            predicted = int(probabilities[i].argmax())
            ax.imshow(images[i], interpolation="nearest")
            ax.imshow(heatmaps[i], cmap="jet", alpha=0.45, vmin=0, vmax=1,  # stretched over
                      interpolation="bilinear", extent=(-0.5, size - 0.5, size - 0.5, -0.5))
            ax.set_title(f"{name}:\n{class_names[predicted]} {probabilities[i, predicted]:.0%}",
                         fontsize=9, color="black" if predicted == labels[i] else "red")
        for ax in row:
            ax.axis("off")
    return _finish(fig, title)


VARIANT_MARKERS = {"keras": ("o", "Keras (TensorFlow's threads)"),
                   "float32": ("s", "LiteRT float32"), "float16": ("^", "LiteRT float16"),
                   "dynamic": ("D", "LiteRT dynamic range"), "int8": ("*", "LiteRT int8"),
                   "int8_selective": ("P", "LiteRT mixed int8/float")}


def plot_tradeoffs(results):
    """Test accuracy against training time, file size and single-image latency, of the series'
    `load_results`: one colour per model in all panels, one marker per exported variant."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, PercentFormatter
    trained = results[results["variant"].isna()] if "variant" in results else results
    exported = results[results["variant"].notna()] if "variant" in results else results.iloc[:0]
    colors = {run: f"C{i}" for i, run in enumerate(trained["run"])}
    fig, axes = _pyplot().subplots(1, 3, figsize=(15, 5.2), sharey=True)
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
              "single-image latency on this machine (ms, median; LiteRT on 2 threads)"]
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
    # Legends, not labels: the variants of one model sit too close together to label.
    fig.legend(handles=models, loc="lower center", ncol=3, bbox_to_anchor=(0.5, 0.06),
               frameon=False)
    if variants:
        fig.legend(handles=variants, loc="lower center", ncol=len(variants),
                   bbox_to_anchor=(0.5, -0.01), frameon=False)
    fig.tight_layout(rect=(0, 0.17, 1, 1))
    return fig


def save_figure(fig, name, directory="figures", dpi=110):
    """Save `fig` as `<directory>/<name>.png` (about 800-1200 px wide) and return the path."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    path = Path(directory) / f"{Path(name).stem}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight", facecolor="white")
    return path
