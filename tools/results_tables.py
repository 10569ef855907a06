"""Write RESULTS.md, every results table of the series, computed from `results/` after a full run.

    make results-tables     (needs CIFAR10_DIR, or the download, for the real test labels)

RESULTS.md is generated in full: the run's conditions, every trained model (accuracy,
parameters, training time), recall per class, accuracy on the test images with official
pixels against the JPEG-recovered ones (only for a copy that has both), the shipped
variants, and each notebook's run time from its cells' timestamps. It also prints the
README's two tables (headline results, run times). The test suite checks that RESULTS.md is what this writes and that
the README shows the headline table as printed, so a rerun regenerates, never retypes.
"""

from __future__ import annotations

import json
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"keras": "Keras", "float32": "LiteRT float32", "float16": "LiteRT float16",
            "dynamic": "LiteRT dynamic range", "int8": "LiteRT int8",
            "int8_selective": "LiteRT mixed int8/float"}


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


def millions(n):
    return f"{n / 1e6:.2f} M"


def headline_table(trained):
    """The README's table: one row per trained model."""
    lines = [row("model", "notebook", "test accuracy", "parameters", "training time"),
             "| --- | --- | ---: | ---: | ---: |"]
    lines += [row(r["model"], r["notebook"][:2], f"{r['test_accuracy']:.1%}",
                  millions(r["params_total"]), f"{r['train_seconds'] / 60:.1f} min")
              for r in trained]
    return "\n".join(lines)


def models_table(trained):
    lines = [row("model", "notebook", "test accuracy", "parameters (trained)", "training time",
                 "epochs", "image size", "mirror averaging"),
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | :---: |"]
    for r in trained:
        lines.append(row(r["model"], r["notebook"][:2], f"{r['test_accuracy']:.1%}",
                         f"{millions(r['params_total'])} ({millions(r['params_trainable'])})",
                         f"{r['train_seconds'] / 60:.1f} min", r["epochs"],
                         f"{r['image_size']}×{r['image_size']}",
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
    """The shipped variants, grouped by the model they export; latencies to 0.01 ms, the
    precision their ratios need (the CNN's int8 runs in about a tenth of a millisecond)."""
    def ms(value):
        return "—" if value is None else f"{value:.2f} ms"
    lines = [row("model", "variant", "notebook", "test accuracy", "file size",
                 "latency, 1 thread", "latency, 2 threads"),
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for source in sorted({r["source_run"] for r in variants}):
        chosen = sorted((r for r in variants if r["source_run"] == source),
                        key=lambda r: list(VARIANTS).index(r["variant"]))
        for r in chosen:
            if r.get("median_ms_tf_threads") is not None:  # Keras: TensorFlow's own threads
                two = f"{ms(r['median_ms_tf_threads'])} (TensorFlow)"
            else:
                two = ms(r["median_ms_2_threads"])
            lines.append(row(r["model"].split(" (")[0], VARIANTS[r["variant"]],
                             r["notebook"][:2], f"{r['test_accuracy']:.1%}",
                             f"{r['megabytes']:.2f} MB", ms(r["median_ms_1_threads"]), two))
    return "\n".join(lines)


def run_time_table(everything, notebooks=ROOT / "notebooks"):
    """Each executed notebook's minutes, from its first cell's start to its last cell's end,
    and the CPU its results records name (00 saves none)."""
    def moment(text):
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    lines = [row("notebook", "minutes (cell timestamps)", "CPU (results records)"),
             "| --- | ---: | --- |"]
    total = 0.0
    for path in sorted(Path(notebooks).glob("[0-9][0-9]_*.ipynb")):
        times = [c["metadata"]["execution"] for c in json.loads(path.read_text())["cells"]
                 if c.get("metadata", {}).get("execution", {}).get("shell.execute_reply")]
        records = [r for r in everything if r["notebook"] == path.name]
        cpu = ", ".join(sorted({r.get("cpu") or "not recorded" for r in records})) or "—"
        if not times:
            lines.append(row(path.stem, "not executed", cpu))
            continue
        minutes = (max(moment(t["shell.execute_reply"]) for t in times)
                   - min(moment(t["iopub.execute_input"]) for t in times)).total_seconds() / 60
        total += minutes
        lines.append(row(path.stem, f"{minutes:.1f}", cpu))
    lines.append(row("the series", f"{total:.1f}", ""))
    return "\n".join(lines)


def conditions(everything):
    """Where the results come from: commits, CPU, TensorFlow, data."""
    def listed(key, missing, width=None):
        return ", ".join(sorted({str(r.get(key) or missing)[:width] for r in everything}))
    provenance = everything[0]["data_provenance"]
    data = "the official CIFAR-10 files (checksums match)" if provenance["official"] else (
        f"a modified copy of CIFAR-10, read from {provenance['source']} (every record lists "
        "its files' md5s): compare these rows with each other, not with published numbers")
    return "\n".join([
        f"- **Commit:** {listed('commit', 'not recorded', 7)}",
        f"- **CPU:** {listed('cpu', 'not recorded in these records')}; device: "
        f"{listed('device', 'not recorded')}; TensorFlow {listed('tensorflow_version', '?')}",
        f"- **Data:** {data}"])


RESULTS_MD = """# Results

Generated by `make results-tables` from [`results/`](results) (one JSON record per model and
its predictions for the 10,000 test images) and the executed notebooks. Do not edit it by
hand: the test suite checks that it is what the command writes, and recomputes every
accuracy from the predictions. Training time is wall time; for frozen models it includes the
one-off feature extraction, for fine-tuned models also the frozen stage they start from, for
the distilled CNN the teacher's pass over every image.

{conditions}

## Every trained model

{models}

![Test accuracy of every model](figures/03_comparison.png)

## Class by class

Recall per class: the % of that class's 1,000 test images the model got right.

{recall}
{pixels}
## Shipped as LiteRT files (notebooks 04 and 05)

Every variant on all 10,000 test images, from raw pixels, without mirror averaging. Latency:
the median of single-image calls on the CPU of the notebook's run (named under "Run time"),
so compare latencies within one notebook; "mixed int8/float" keeps the layers the
quantization debugger ranks worst in float, so it needs a device that runs float operations.

{shipping}

![Accuracy against training time, file size and latency](figures/04_tradeoffs.png)

## Run time

{run_time}
"""

PIXELS = """
## Original pixels and JPEG-recovered ones

The copy's first {original:,} test images keep their official pixels; the others were
recovered from a JPEG version. The two groups are different images, but the test file's
order is random, so a difference beyond the interval points at the recovery. The interval is
a binomial one for the first group alone, ±1.96·√(p(1−p)/n).

{table}
"""


def tables(results=ROOT / "results"):
    """RESULTS.md's text, and the README's headline and run-time tables."""
    from cifar_utils import CLASS_NAMES, load_cifar10
    from cifar_utils.reader import PARTLY_RECOVERED, ModifiedDataWarning

    everything = records(results)
    trained = [r for r in everything if "variant" not in r]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModifiedDataWarning)
        _, (_, labels) = load_cifar10()
    original = PARTLY_RECOVERED.get(trained[0]["data_provenance"]["md5"]["test_batch"])
    pixels = "" if original is None else PIXELS.format(
        original=original, table=pixel_origin_table(trained, labels, original))
    run_time = run_time_table(everything, Path(results).parent / "notebooks")
    text = RESULTS_MD.format(conditions=conditions(everything), models=models_table(trained),
                             recall=recall_table(trained, labels, CLASS_NAMES), pixels=pixels,
                             shipping=shipping_table([r for r in everything if "variant" in r]),
                             run_time=run_time)
    return text, headline_table(trained), run_time


if __name__ == "__main__":
    text, headline, run_time = tables()
    (ROOT / "RESULTS.md").write_text(text)
    print(f"Wrote RESULTS.md. For the README, the headline table:\n\n{headline}\n\n"
          f"and the run times:\n\n{run_time}")
