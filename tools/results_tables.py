"""Print the README's result tables, computed from `results/`, after a full run.

    make results-tables     (needs CIFAR10_DIR, or the download, for the real test labels)

Four Markdown tables: every trained model (accuracy, parameters, training time), recall per
class, accuracy on the test images with official pixels against the JPEG-recovered ones
(only for a copy that has both), and notebook 04's shipped variants. Paste them into the
README's "Results"; the test suite checks that each one printed here appears there verbatim.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("keras", "float32", "float16", "dynamic", "int8", "int8_selective")


def records(results=ROOT / "results"):
    """Every results record, in file-name order (so in notebook order), with its predictions."""
    out = []
    for path in sorted(Path(results).glob("*.json")):
        record = json.loads(path.read_text())
        record["predicted"] = np.load(path.parent / record["predictions_file"])
        out.append(record)
    return out


def row(*cells):
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def models_table(trained):
    def millions(n):
        return f"{n / 1e6:.2f} M"
    lines = [row("model", "notebook", "test accuracy", "parameters (trained)", "training time",
                 "image size", "test-time mirror"),
             "| --- | --- | ---: | ---: | ---: | ---: | :---: |"]
    for r in trained:
        lines.append(row(r["model"], r["notebook"][:2], f"{r['test_accuracy']:.1%}",
                         f"{millions(r['params_total'])} ({millions(r['params_trainable'])})",
                         f"{r['train_seconds'] / 60:.1f} min", f"{r['image_size']}×{r['image_size']}",
                         "yes" if r.get("test_time_augmentation") else "no"))
    return "\n".join(lines)


def recall_table(trained, labels, class_names):
    lines = [row("class", *(r["model"] for r in trained)), "| --- |" + " ---: |" * len(trained)]
    for label, name in enumerate(class_names):
        lines.append(row(name, *(f"{100 * np.mean(r['predicted'][labels == label] == label):.1f}"
                                 for r in trained)))
    return "\n".join(lines)


def pixel_origin_table(trained, labels, original):
    """Accuracy on the first `original` test images (official pixels) and on the others."""
    lines = [row("model", f"original pixels (first {original:,})",
                 f"JPEG-recovered (other {len(labels) - original:,})", "difference",
                 "95% interval, original"),
             "| --- | ---: | ---: | ---: | ---: |"]
    for r in trained:
        right = r["predicted"] == labels
        kept, recovered = right[:original].mean(), right[original:].mean()
        lines.append(row(r["model"], f"{kept:.2%}", f"{recovered:.2%}",
                         f"{100 * (kept - recovered):+.1f} points",
                         f"±{196 * np.sqrt(kept * (1 - kept) / original):.1f} points"))
    return "\n".join(lines)


def shipping_table(variants):
    """Notebook 04's variants, grouped by the model they export; latencies to 0.01 ms,
    the precision their ratios need (the CNN's int8 runs in about a tenth of a millisecond)."""
    def ms(value):
        return "—" if value is None else f"{value:.2f} ms"
    lines = [row("model", "notebook", "test accuracy", "file size", "latency, 1 thread",
                 "latency, 2 threads"),
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    sources = sorted({r["source_run"] for r in variants})
    for source in sources:
        for r in sorted((r for r in variants if r["source_run"] == source),
                        key=lambda r: VARIANTS.index(r["variant"])):
            if r.get("median_ms_tf_threads") is not None:  # the selective variant has none
                two = f"{ms(r['median_ms_tf_threads'])} (TensorFlow)"
            else:
                two = ms(r["median_ms_2_threads"])
            lines.append(row(r["model"], r["notebook"][:2], f"{r['test_accuracy']:.1%}",
                             f"{r['megabytes']:.2f} MB", ms(r["median_ms_1_threads"]), two))
    return "\n".join(lines)


def tables(results=ROOT / "results"):
    """The README's tables as Markdown strings, in the order the README shows them."""
    from cifar_utils import CLASS_NAMES, load_cifar10
    from cifar_utils.reader import PARTLY_RECOVERED, ModifiedDataWarning

    everything = records(results)
    trained = [r for r in everything if "variant" not in r]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModifiedDataWarning)
        _, (_, labels) = load_cifar10()
    out = [models_table(trained), recall_table(trained, labels, CLASS_NAMES)]
    original = PARTLY_RECOVERED.get(trained[0]["data_provenance"]["md5"]["test_batch"])
    if original is not None:  # a partly recovered copy: which images keep their pixels
        out.append(pixel_origin_table(trained, labels, original))
    out.append(shipping_table([r for r in everything if "variant" in r]))
    return out


if __name__ == "__main__":
    print("\n\n".join(tables()))
