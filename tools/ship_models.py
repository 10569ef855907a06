"""Copy the trained models that notebooks 04 and 05 use into `models/`, for fresh clones.

    make ship-models                       (after the full run: `make series`)
    make ship-models RUNS=05_distilled_cnn  (one notebook's model, after a run of it alone)

Each model is saved again without its optimizer state (04 only predicts and exports), beside
its results record, which names the notebook, the commit it ran from and its test accuracy.
All of `models/` must total at most 20 MB, so that a clone and Colab fetch it quickly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ("01_improved_cnn", "03_finetuned_mobilenetv2", "05_distilled_cnn")
LIMIT_MB = 20.0


def ship(runs=RUNS, *, models=ROOT / "build" / "models", results=ROOT / "results",
         target=ROOT / "models", limit_mb=LIMIT_MB) -> list[Path]:
    """Write `target/<run>.keras` and `target/<run>.json` for each run; returns the files."""
    import tempfile

    import keras

    from cifar_utils.results import prediction_only
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as staging:  # nothing replaced until all fit
        staged = []
        for run in runs:
            record = json.loads((results / f"{run}.json").read_text())
            source = models / f"{run}.keras"
            if not source.is_file():
                raise SystemExit(f"{source} is missing: run notebook {run[:2]} in full mode "
                                 "first (`make series`), which saves it.")
            if not record.get("commit"):
                raise SystemExit(f"{run}.json names no commit: rerun notebook {run[:2]} from a "
                                 "git checkout, so that the shipped model says what made it.")
            model = Path(staging) / f"{run}.keras"
            with prediction_only(keras.saving.load_model(source, compile=False)) as loaded:
                loaded.save(model)
            (Path(staging) / f"{run}.json").write_text(json.dumps(record, indent=2) + "\n")
            staged += [model, Path(staging) / f"{run}.json"]
        kept = [path for path in target.glob("*.*") if path.name not in
                {staged_path.name for staged_path in staged}]  # models shipped before, kept
        megabytes = sum(path.stat().st_size for path in staged + kept) / 1e6
        if megabytes > limit_mb:
            raise SystemExit(f"the models would take {megabytes:.1f} MB, over the "
                             f"{limit_mb:.0f} MB limit: nothing was shipped.")
        shipped = [path.replace(target / path.name) for path in staged]
    for path in shipped:
        print(f"{target.name}/{path.name}: {path.stat().st_size / 1e6:.2f} MB")
    return shipped


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    import cifar_utils as cu
    cu.start_tensorflow()
    ship(tuple(sys.argv[1:]) or RUNS)  # e.g. `make ship-models RUNS=05_distilled_cnn`
