"""Do every "Try it yourself" exercise as a student does, in quick mode, and check where it writes.

    make check-exercises                      # all of them
    make check-exercises EXERCISES="01 03.2"  # one notebook's, or one exercise

A student meets an exercise after running the notebook as committed, from the top. So each
exercise here starts a fresh kernel in notebooks/ (as Jupyter does), runs the committed
notebook from the top, and then follows the exercise's own steps, in its order: set
`OUTPUT_DIR` and rerun the cells the "Try it yourself" section names, then the edits and the
cells the exercise names (`Edit`, `Run`, `Add`; `RestartRunAll` where the text says to
restart). Each exercise starts from the committed notebook, not after another exercise's
edits. It passes when every cell runs and the steps changed nothing in the repository but
the exercise's own output folder (the files git tracks, and the ignored ones such as build/).
`tests/test_exercises.py` checks, without running anything, that every step still finds
the cell it names.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PARAMS = "SEED = "  # picks the parameters cell of every notebook
RECORD = "record = cu.Recorder"  # the data cell, which creates `record`: where results go
END = None  # `Run(first, END)`: from a cell to the end of the notebook


@dataclass(frozen=True)
class Edit:
    """Change `old` to `new` (found `count` times) in the code cell holding `cell`."""
    cell: str
    old: str
    new: str
    count: int = 1


@dataclass(frozen=True)
class Run:
    """Run the code cell holding `first`, and on through the one holding `last` (END: to the
    end; by default only the first)."""
    first: str
    last: str | None = ""


@dataclass(frozen=True)
class Add:
    """A new cell the student types at the end, and runs."""
    source: str


@dataclass(frozen=True)
class RestartRunAll:
    """Restart the kernel and run every cell, as edited so far."""


@dataclass
class Exercise:
    """One exercise: its notebook, its number, and its steps after the section's own
    (`OUTPUT_DIR` set to `output_dir`, the parameters and data cells run again).
    `before`: exercises whose output this one needs, done first in the same folder."""

    notebook: str
    number: int
    steps: tuple
    output_dir: str = "my_runs"
    before: tuple = ()

    @property
    def name(self):
        return f"{self.notebook[:2]}.{self.number}"

    def all_steps(self):
        return (Edit(PARAMS, "OUTPUT_DIR = None", f'OUTPUT_DIR = "{self.output_dir}"'), Run(PARAMS),
                Run(RECORD), *SECTION.get(self.notebook[:2], ()), *self.steps)


N00, N01, N02, N03, N04, N05 = sorted(p.name for p in NOTEBOOKS.glob("0[0-5]_*.ipynb"))
IMPROVED = "improved = keras.Model"  # 01: the cell that builds `improved`
# Cells a "Try it yourself" section names beyond the parameters and data cells: 04 loads its
# models from OUTPUT_DIR, so its exercises rerun the cell that loads them.
SECTION = {"04": (Run('cnn, cnn_run = record.trained_model("01_improved_cnn"'),)}

EXERCISES = [
    Exercise(N00, 1, (Add("import matplotlib.pyplot as plt\n"
                          "for k in range(10):\n"
                          "    plt.imshow(data.train.images[data.train.labels == k].mean(axis=0) / 255)\n"
                          "    plt.show()"),)),
    Exercise(N00, 2, (Add("data.val.labels[:20]"), Edit(PARAMS, "SEED = 42", "SEED = 7"),
                      Run(PARAMS), Run(RECORD), Run("np.bincount"), Add("data.val.labels[:20]"))),
    Exercise(N00, 3, (Add("data.train.images.nbytes, len(data.train.images) * 160 * 160 * 3 * 4"),)),
    Exercise(N01, 1, (Edit("augmented = cu.make_pipelines", "augment=augment", "augment=None"),
                      Run(IMPROVED, END))),
    Exercise(N01, 2, (Edit(PARAMS, "IMPROVED_WIDTH = 16", "IMPROVED_WIDTH = 32"), Run(PARAMS),
                      Run(IMPROVED, END))),
    Exercise(N01, 3, (Edit("improved.compile", "keras.optimizers.Adam(schedule)",
                           "keras.optimizers.Adam(IMPROVED_LR)"), Run(IMPROVED, END))),
    Exercise(N01, 4, (Edit(IMPROVED,
                           "x = layers.MaxPooling2D()(conv_bn(x, 4 * width))  # 64 channels, pooled to 8x8\n",
                           "x = layers.MaxPooling2D()(conv_bn(x, 4 * width))  # 64 channels, pooled to 8x8\n"
                           "x = residual(x, 4 * width)\n"), Run(IMPROVED, END))),
    Exercise(N01, 5, (Add('keep = data.test.labels == cu.CLASS_NAMES.index("cat")\n'
                          "cu.plot_predictions(data.test.images[keep], data.test.labels[keep], "
                          "improved_eval.predictions[keep])"),)),
    Exercise(N02, 1, (Edit("head_log = train_head", "features.train_and_mirrored()",
                           "features.train"),
                      Run("head_log = train_head", "USE_MIRROR = "))),
    Exercise(N02, 2, (Edit(PARAMS, "IMAGE_SIZE = 160", "IMAGE_SIZE = 128"), RestartRunAll())),
    Exercise(N02, 3, (Edit("preprocess = preprocess_input", "preprocess = preprocess_input",
                           "preprocess = keras.layers.Rescaling(1 / 255)"), RestartRunAll())),
    Exercise(N02, 4, (Edit("classic_base = keras.applications", "weights=weights",
                           "weights=None", 2), RestartRunAll())),
    Exercise(N02, 5, (Edit("head.summary()", "units=1024", "units=256"),
                      Run("head.summary()", "USE_MIRROR = "))),
    Exercise(N03, 1, (Edit(PARAMS, 'CUT = "block_12_add"', 'CUT = "block_9_add"'),
                      Edit(PARAMS, "DEPTHS = (1, 2, 3, 4)", "DEPTHS = (4, 5, 6, 7)"),
                      RestartRunAll())),
    Exercise(N03, 2, (Edit(PARAMS, "FINETUNE_LR = 2e-4", "FINETUNE_LR = 1e-3"), Run(PARAMS),
                      Add("before = settings.copy()"), Run("settings = compare"), Add("before"),
                      Edit(PARAMS, "WARMUP_EPOCHS = 0.5", "WARMUP_EPOCHS = 1"), Run(PARAMS),
                      Add("before = settings.copy()"), Run("settings = compare"), Add("before"))),
    Exercise(N03, 3, (Edit("def finetune",
                           "layer.trainable = in_top and not isinstance(layer, layers.BatchNormalization)",
                           "layer.trainable = in_top"),
                      Edit("def transfer_model", "base(inputs, training=False)", "base(inputs)"),
                      Run("import cifar_utils as cu", "def finetune"), Add("blocks = 4"),
                      Add("before = settings.copy()"), Run("settings = compare"), Add("before"),
                      Edit(PARAMS, "BATCH_SIZE = 64", "BATCH_SIZE = 32"), Run(PARAMS),
                      Add("before = settings.copy()"), Run("settings = compare"), Add("before"))),
    Exercise(N02, 0, (Edit(PARAMS, "IMAGE_SIZE = 160", "IMAGE_SIZE = 224"), RestartRunAll()),
             output_dir="my_runs_224"),  # the first half of 03.4
    Exercise(N03, 4, (Edit(PARAMS, "IMAGE_SIZE = 160", "IMAGE_SIZE = 224"), RestartRunAll()),
             output_dir="my_runs_224", before=("02.0",)),
    Exercise(N04, 1, (Edit("def explain", "grad_cam(cnn, images)",
                           "grad_cam(cnn, images, classes=np.full(len(picks), 3))"),
                      Edit("def explain", "grad_cam(mobilenet, images)",
                           "grad_cam(mobilenet, images, classes=np.full(len(picks), 3))"),
                      Run("def explain"),
                      Add('explain(np.flatnonzero(data.test.labels == 5)[:GRAD_CAM_IMAGES], "cat_in_dogs")'))),
    Exercise(N04, 2, (Edit("def explain", "grad_cam(mobilenet, images)",
                           'grad_cam(mobilenet, images, layer="block_13_expand_relu")'),
                      Run("def explain"), Run('kind="correct"', 'kind="mistakes"'))),
    Exercise(N04, 3, (Edit(PARAMS, "REPRESENTATIVE_SIZE = 100 if QUICK else 500",
                           "REPRESENTATIVE_SIZE = 10"), Run(PARAMS), Run("def ship"),
                      Run("ship(cnn", "for name, table in"))),
    Exercise(N05, 1, (Edit(PARAMS, "ALPHA = 0.9", "ALPHA = 0.0"), Run(PARAMS),
                      Run("student, log = train_student(best"), Run("distilled = keras.Model"))),
    Exercise(N05, 2, (Edit(PARAMS, "TEMPERATURE = 4.0", "TEMPERATURE = 1.0"), Run(PARAMS),
                      Run("runs = {"))),
    Exercise(N05, 3, (Edit("example = int(", '"truck"', '"cat"'), Run("example = int("))),
]


def code_index(nb, marker, start=0):
    """The index of the one code cell from `start` on whose source holds `marker`."""
    found = [i for i, c in enumerate(nb.cells)
             if i >= start and c.cell_type == "code" and marker in c.source]
    if len(found) != 1 and not (start and found):
        raise LookupError(f"{len(found)} code cells hold {marker!r}, not 1")
    return found[0]


def cells_to_run(nb, step):
    """The indices of the cells `step` (a `Run`) runs, in order."""
    first = code_index(nb, step.first)
    if step.last == "":
        return [first]
    last = len(nb.cells) - 1 if step.last is END else code_index(nb, step.last, first + 1)
    return [i for i in range(first, last + 1) if nb.cells[i].cell_type == "code"]


def apply(nb, step, exercise):
    """Make the edit of `step` (an `Edit` or `Add`) in `nb`; the index of a new cell."""
    import nbformat
    if isinstance(step, Edit):
        cell = nb.cells[code_index(nb, step.cell)]
        if cell.source.count(step.old) != step.count:
            raise LookupError(f"{exercise.name}: {step.old!r} occurs "
                              f"{cell.source.count(step.old)} times in the cell holding "
                              f"{step.cell!r}, not {step.count}")
        cell.source = cell.source.replace(step.old, step.new)
    elif isinstance(step, Add):
        nb.cells.append(nbformat.v4.new_code_cell(step.source))
        return len(nb.cells) - 1


def committed(exercise):
    import nbformat
    return nbformat.read(NOTEBOOKS / exercise.notebook, as_version=4)


def check(exercise):
    """Follow the steps of `exercise` without running anything: every edit and every cell
    named must be found, once."""
    nb = committed(exercise)
    for step in exercise.all_steps():
        if isinstance(step, Run):
            cells_to_run(nb, step)
        else:
            apply(nb, step, exercise)
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
    """The committed notebook from the top in a fresh kernel, then the exercise's steps;
    raise if a cell fails or the steps changed the repository outside the exercise's folder."""
    from nbclient import NotebookClient
    nb = committed(exercise)
    client = NotebookClient(nb, timeout=3600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    folder = f"notebooks/{exercise.output_dir}/"
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        before = snapshot(folder)  # what the committed notebook writes is not the exercise's
        for step in exercise.all_steps():
            if isinstance(step, RestartRunAll):
                client.km.restart_kernel()
                client.kc.wait_for_ready(timeout=600)
                indices = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
            elif isinstance(step, Run):
                indices = cells_to_run(nb, step)
            else:
                index = apply(nb, step, exercise)
                indices = [] if index is None else [index]
            for index in indices:
                client.execute_cell(nb.cells[index], index)
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
            shutil.rmtree(NOTEBOOKS / exercise.output_dir, ignore_errors=True)
        start = time.perf_counter()
        try:
            run(exercise)
            verdict = "ok"
        except Exception as error:  # report every exercise, then fail
            message = str(error).strip() or type(error).__name__
            verdict, failed = f"FAILED: {message[-2000:]}", [*failed, exercise.name]
        print(f"exercise {exercise.name} ({exercise.notebook}): {verdict} "
              f"[{time.perf_counter() - start:.0f} s]", flush=True)
    for folder in {exercise.output_dir for exercise in chosen}:
        shutil.rmtree(NOTEBOOKS / folder, ignore_errors=True)
    if failed:
        sys.exit(f"{len(failed)} exercises failed: {', '.join(failed)}")
    print(f"All {len(chosen)} exercises ran as written and wrote only to their own folders.")


if __name__ == "__main__":
    main(sys.argv[1:])
