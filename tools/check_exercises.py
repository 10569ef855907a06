"""Run every "Try it yourself" exercise as written, in quick mode, and check where it writes.

    make check-exercises                      # all of them, one quick-mode notebook run each
    make check-exercises EXERCISES="01 03.2"  # one notebook's, or one exercise

Each exercise below is the notebook's own text turned into edits: set `OUTPUT_DIR` as the
"Try it yourself" section says, change the code it names, add the cells it asks for, and run
the notebook in a fresh kernel started in notebooks/, as Jupyter does. An exercise passes when
every cell runs and nothing in the repository changed except its own output folder (the
files git tracks, and the ignored ones such as build/, are compared before and after).
`tests/test_exercises.py` checks, without running anything, that every edit still finds the
code it changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
MY_RUNS = 'OUTPUT_DIR = "my_runs"'


@dataclass
class Exercise:
    """One exercise: `edits` are (a text that picks the code cell, old, new, how often old
    occurs there); `drop` removes the cells holding a text and `insert` puts (before the cell
    holding a text, a new cell) in; `stop_after` ends the run after the cell holding a text;
    `append` adds cells at the end, in order ("@settings" repeats 03's settings comparison,
    "@params:old->new" the parameters cell with one more change)."""

    notebook: str
    number: int
    edits: list = field(default_factory=list)
    drop: tuple = ()
    insert: tuple = ()
    stop_after: str | None = None
    append: tuple = ()
    output_dir: str = MY_RUNS
    before: tuple = ()  # exercises run first, in the same output folder (03.4 needs 02)

    @property
    def name(self):
        return f"{self.notebook[:2]}.{self.number}"

    @property
    def folder(self):
        """Its output folder, relative to notebooks/ (where Jupyter starts the kernel)."""
        return self.output_dir.split('"')[1]


PARAMS = "OUTPUT_DIR = None"  # picks the parameters cell of every notebook
N00, N01, N02, N03, N04 = sorted(p.name for p in NOTEBOOKS.glob("0[0-4]_*.ipynb"))

EXERCISES = [
    Exercise(N00, 1, append=("import matplotlib.pyplot as plt\n"
                             "for k in range(10):\n"
                             "    plt.imshow(data.train.images[data.train.labels == k].mean(axis=0) / 255)\n"
                             "    plt.show()",)),
    Exercise(N00, 2, edits=[(PARAMS, "SEED = 42", "SEED = 7", 1)]),
    Exercise(N00, 3, append=("data.train.images.nbytes, len(data.train.images) * 160 * 160 * 3 * 4",)),
    Exercise(N01, 1, edits=[("augmented = cu.make_pipelines", "augment=augment", "augment=None", 1)]),
    Exercise(N01, 2, edits=[(PARAMS, "IMPROVED_WIDTH = 16", "IMPROVED_WIDTH = 32", 1)]),
    Exercise(N01, 3, edits=[("improved.compile", "keras.optimizers.Adam(schedule)",
                             "keras.optimizers.Adam(1e-3)", 1)]),
    Exercise(N01, 4, edits=[("improved = keras.Model",
                             "x = layers.MaxPooling2D()(conv_bn(x, 4 * width))  # 64 channels, pooled to 8x8\n",
                             "x = layers.MaxPooling2D()(conv_bn(x, 4 * width))  # 64 channels, pooled to 8x8\n"
                             "x = residual(x, 4 * width)\n", 1)]),
    Exercise(N01, 5, append=('keep = data.test.labels == cu.CLASS_NAMES.index("cat")\n'
                             "cu.plot_predictions(data.test.images[keep], data.test.labels[keep], "
                             "improved_eval.predictions[keep])",)),
    Exercise(N02, 1, edits=[("head_log = train_head", "features.train_and_mirrored()",
                             "features.train", 1)]),
    Exercise(N02, 2, edits=[(PARAMS, "IMAGE_SIZE = 160", "IMAGE_SIZE = 128", 1)]),
    Exercise(N02, 3, edits=[("preprocess = preprocess_input", "preprocess = preprocess_input",
                             "preprocess = keras.layers.Rescaling(1 / 255)", 1)]),
    Exercise(N02, 4, edits=[("classic_base = keras.applications", "weights=weights",
                             "weights=None", 2)]),
    Exercise(N02, 5, edits=[("head.summary()", "units=1024", "units=256", 1)]),
    Exercise(N03, 1, edits=[(PARAMS, 'CUT = "block_12_add"', 'CUT = "block_9_add"', 1),
                            (PARAMS, "DEPTHS = (1, 2, 3, 4)", "DEPTHS = (4, 5, 6, 7)", 1)]),
    Exercise(N03, 2, edits=[(PARAMS, "FINETUNE_LR = 2e-4", "FINETUNE_LR = 1e-3", 1)]),
    Exercise(N03, 3, edits=[("def finetune",
                             "layer.trainable = in_top and not isinstance(layer, layers.BatchNormalization)",
                             "layer.trainable = in_top", 1),
                            ("def transfer_model", "base(inputs, training=False)", "base(inputs)", 1)],
             drop=("depths = compare", "best = depths"), insert=(("settings = compare", "blocks = 4"),),
             stop_after="settings = compare",
             append=("before = settings.copy()", "@params:BATCH_SIZE = 64->BATCH_SIZE = 32",
                     "@settings", "before")),
    Exercise(N02, 0, edits=[(PARAMS, "IMAGE_SIZE = 160", "IMAGE_SIZE = 224", 1)],
             output_dir='OUTPUT_DIR = "my_runs_224"'),  # the first half of 03.4
    Exercise(N03, 4, edits=[(PARAMS, "IMAGE_SIZE = 160", "IMAGE_SIZE = 224", 1)],
             output_dir='OUTPUT_DIR = "my_runs_224"', before=("02.0",)),
    Exercise(N04, 1, edits=[("def explain", "grad_cam(cnn, images)",
                             "grad_cam(cnn, images, classes=np.full(len(picks), 3))", 1),
                            ("def explain", "grad_cam(mobilenet, images)",
                             "grad_cam(mobilenet, images, classes=np.full(len(picks), 3))", 1)],
             append=('explain(np.flatnonzero(data.test.labels == 5)[:GRAD_CAM_IMAGES], "cat_in_dogs")',)),
    Exercise(N04, 2, edits=[("def explain", "grad_cam(mobilenet, images)",
                             'grad_cam(mobilenet, images, layer="block_13_expand_relu")', 1)]),
    Exercise(N04, 3, edits=[(PARAMS, "REPRESENTATIVE_SIZE = 100 if QUICK else 500",
                             "REPRESENTATIVE_SIZE = 10", 1)]),
]


def code_cell(nb, marker):
    """The one code cell whose source holds `marker`."""
    cells = [c for c in nb.cells if c.cell_type == "code" and marker in c.source]
    if len(cells) != 1:
        raise LookupError(f"{len(cells)} code cells hold {marker!r}, not 1")
    return cells[0]


def prepared(exercise):
    """The notebook of `exercise` with its edits made, ready to run."""
    import nbformat
    nb = nbformat.read(NOTEBOOKS / exercise.notebook, as_version=4)
    for marker, old, new, count in [*exercise.edits, (PARAMS, PARAMS, exercise.output_dir, 1)]:
        cell = code_cell(nb, marker)
        if cell.source.count(old) != count:
            raise LookupError(f"{exercise.name}: {old!r} occurs {cell.source.count(old)} times "
                              f"in the cell holding {marker!r}, not {count}")
        cell.source = cell.source.replace(old, new)
    params = code_cell(nb, exercise.output_dir).source

    def resolve(source):
        if source == "@settings":  # 03's settings comparison again
            return code_cell(nb, "settings = compare").source
        if source.startswith("@params:"):  # the parameters cell again, with one more change
            old, new = source[len("@params:"):].split("->")
            return params.replace(old, new)
        return source

    appended = [resolve(source) for source in exercise.append]  # before cells move
    nb.cells = [c for c in nb.cells if not any(text in c.source for text in exercise.drop)]
    for marker, source in exercise.insert:
        nb.cells.insert(nb.cells.index(code_cell(nb, marker)), nbformat.v4.new_code_cell(source))
    if exercise.stop_after:
        nb.cells = nb.cells[:nb.cells.index(code_cell(nb, exercise.stop_after)) + 1]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in appended]
    return nb


def snapshot(exercise_folder="notebooks/my_runs"):
    """Every file of the repository, tracked, untracked or ignored (git lists them all without
    --exclude-standard), with its content hash; not the exercise's folder, the environment and
    the caches."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    return {name: hashlib.md5((ROOT / name).read_bytes()).hexdigest()
            for name in filter(None, listed)
            if not name.startswith((exercise_folder, ".venv/", ".cache/"))
            and "__pycache__" not in name and (ROOT / name).is_file()}


def run(exercise):
    """Run one exercise in a fresh kernel; raise if a cell fails or the repository changed."""
    from nbclient import NotebookClient
    folder = f"notebooks/{exercise.folder}/"
    before = snapshot(folder)
    NotebookClient(prepared(exercise), timeout=3600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    after = snapshot(folder)
    changed = sorted(name for name in before.keys() | after.keys()
                     if before.get(name) != after.get(name))
    if changed:
        raise AssertionError(f"{exercise.name} wrote outside its folder: {', '.join(changed[:10])}")


def main(selection):
    os.environ["CIFAR_UTILS_QUICK"] = "1"
    chosen = [e for e in EXERCISES
              if not selection or any(e.name == s or e.name.startswith(s + ".") or
                                      e.notebook.startswith(s + "_") for s in selection)]
    names = {e.name for e in chosen}
    chosen = [e for e in EXERCISES if e.name in names or
              any(e.name in c.before for c in chosen)]  # what an exercise needs runs first
    failed = []
    for exercise in chosen:
        if not exercise.before:  # else keep what the exercise it needs wrote there
            shutil.rmtree(NOTEBOOKS / exercise.folder, ignore_errors=True)
        start = time.perf_counter()
        try:
            run(exercise)
            verdict = "ok"
        except Exception as error:  # report every exercise, then fail
            message = str(error).strip() or type(error).__name__
            verdict, failed = f"FAILED: {message[-2000:]}", [*failed, exercise.name]
        print(f"exercise {exercise.name} ({exercise.notebook}): {verdict} "
              f"[{time.perf_counter() - start:.0f} s]", flush=True)
    for folder in {exercise.folder for exercise in chosen}:
        shutil.rmtree(NOTEBOOKS / folder, ignore_errors=True)
    if failed:
        sys.exit(f"{len(failed)} exercises failed: {', '.join(failed)}")
    print(f"All {len(chosen)} exercises ran as written and wrote only to their own folders.")


if __name__ == "__main__":
    main(sys.argv[1:])
