"""Notebook 05's distillation loss and its training data, run from the notebook's own cells.

The loss and the pipeline are the lesson, so they live in the notebook; these tests execute
the cells that define them (not a copy) on small synthetic inputs.
"""

import ast
import json
from pathlib import Path

import numpy as np
import pytest

NOTEBOOK = next((Path(__file__).resolve().parents[1] / "notebooks").glob("05_*.ipynb"))


def defined(*names, **namespace):
    """The functions `names` of notebook 05, defined in `namespace` (plus keras, np, tf)."""
    import keras
    import tensorflow as tf
    namespace = {"keras": keras, "np": np, "tf": tf, "layers": keras.layers, **namespace}
    for cell in json.loads(NOTEBOOK.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        for node in ast.parse("".join(cell["source"])).body:
            if isinstance(node, ast.FunctionDef) and node.name in names:
                exec(compile(ast.Module([node], []), str(NOTEBOOK), "exec"), namespace)
    return [namespace[name] for name in names]


def targets(labels, teacher):
    return np.concatenate([np.eye(10)[labels], teacher], axis=1).astype("float32")


@pytest.fixture(scope="module")
def loss():
    (distillation_loss,) = defined("distillation_loss")
    return distillation_loss


def test_the_loss_is_zero_when_the_student_is_the_teacher_at_alpha_1(loss):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(8, 10)).astype("float32") * 3
    teacher = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    for temperature in (1.0, 4.0):
        value = loss(1.0, temperature)(targets(rng.integers(0, 10, 8), teacher), logits)
        assert np.allclose(np.asarray(value), 0.0, atol=1e-5)
    other = rng.normal(size=(8, 10)).astype("float32")  # a student unlike the teacher
    assert np.all(np.asarray(loss(1.0, 4.0)(targets(np.zeros(8, int), teacher), other)) > 1e-3)


def test_the_loss_is_the_cross_entropy_with_the_labels_at_alpha_0(loss):
    import keras
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(8, 10)).astype("float32")
    labels = rng.integers(0, 10, 8)
    teacher = rng.dirichlet(np.ones(10), size=8)
    expected = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    assert np.allclose(np.asarray(loss(0.0, 4.0)(targets(labels, teacher), logits)),
                       np.asarray(expected), atol=1e-5)


def test_the_soft_term_is_scaled_by_t_squared_and_weighted_by_alpha(loss):
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(4, 10)).astype("float32")
    labels, teacher = rng.integers(0, 10, 4), rng.dirichlet(np.ones(10), size=4)
    y = targets(labels, teacher)
    hard, soft = (np.asarray(loss(a, 2.0)(y, logits)) for a in (0.0, 1.0))
    assert np.allclose(np.asarray(loss(0.25, 2.0)(y, logits)), 0.75 * hard + 0.25 * soft,
                       atol=1e-5)


def test_a_flipped_training_image_carries_the_teacher_s_answer_for_its_mirror_image():
    """The cached targets follow the view: a random flip picks the mirror image's
    probabilities; without training, images and targets stay as they are, in order."""
    import keras
    keras.utils.set_random_seed(0)
    count = 64
    images = np.zeros((count, 32, 32, 3), np.uint8)
    images[:, :, :16] = 255  # bright left half: a flip shows as a bright right half
    labels = np.arange(count) % 10
    plain = np.tile(np.eye(10, dtype="float32")[0], (count, 1))  # the teacher: class 0 for the image,
    mirrored = np.tile(np.eye(10, dtype="float32")[1], (count, 1))  # class 1 for its mirror image
    namespace = {"BATCH_SIZE": 16, "SEED": 0, "standardize": lambda x: x,
                 "shift": lambda x, training: x, "flips": keras.random.SeedGenerator(0)}
    (distillation_data,) = defined("distillation_data", **namespace)
    seen = {0: 0, 1: 0}
    for x, y in distillation_data(images, labels, plain, mirrored, train=True):
        x, y = np.asarray(x), np.asarray(y)
        flipped = x[:, :, 16:].mean(axis=(1, 2, 3)) > x[:, :, :16].mean(axis=(1, 2, 3))
        assert np.array_equal(y[:, 10:].argmax(axis=1), flipped.astype(int))
        assert np.allclose(y[:, :10].sum(axis=1), 1)
        for f in flipped:
            seen[int(f)] += 1
    assert seen[0] > 0 and seen[1] > 0  # both views drawn
    x, y = next(iter(distillation_data(images, labels, plain, mirrored)))
    assert np.array_equal(np.asarray(x), images[:16].astype("float32"))
    assert np.array_equal(np.asarray(y)[:, :10].argmax(axis=1), labels[:16])
    assert np.array_equal(np.asarray(y)[:, 10:], plain[:16])
