"""Evaluation numbers, in plain NumPy and pandas: every number can be recomputed from a saved
predictions file without TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .data import CLASS_NAMES


@dataclass
class Evaluation:
    """A model's test-set outputs: probabilities, predicted classes, accuracy and loss."""
    probabilities: np.ndarray
    predictions: np.ndarray
    accuracy: float
    loss: float


def evaluate(model, data, y_true, *, mirrored=None) -> Evaluation:
    """Predict `data` (array or dataset, in the order of `y_true`) and score the predictions.

    `mirrored`: the same images flipped, their probabilities averaged in (mirror averaging). The
    loss is `model.evaluate`'s (clipped at 1e-7) without its second pass over the data."""
    def predict(x):  # arrays in batches of 256; a tf.data pipeline batches itself
        return model.predict(x, batch_size=None if hasattr(x, "element_spec") else 256, verbose=0)

    probabilities = predict(data)
    if mirrored is not None:
        flipped = predict(mirrored)
        if flipped.shape != probabilities.shape:
            raise ValueError(f"{len(flipped)} mirrored predictions for {len(probabilities)} "
                             "images: `mirrored` must hold the same images as `data`, flipped.")
        probabilities = (probabilities + flipped) / 2
    y_true = np.asarray(y_true).reshape(-1).astype(np.int64)
    if len(probabilities) != len(y_true):
        raise ValueError(f"{len(probabilities)} predictions for {len(y_true)} labels: pass "
                         "the labels of exactly the images in `data`, in the same order.")
    predictions = probabilities.argmax(axis=1)
    picked = np.clip(probabilities[np.arange(len(y_true)), y_true], 1e-7, 1.0)
    return Evaluation(probabilities=probabilities, predictions=predictions,
                      accuracy=accuracy(y_true, predictions), loss=float(-np.log(picked).mean()))


def mirror_helps(model, data, mirrored, y_true) -> bool:
    """True when mirror averaging strictly raises accuracy; prints both. Pass the **validation**
    inputs: settings are never chosen on the test set."""
    single = evaluate(model, data, y_true).accuracy
    both = evaluate(model, data, y_true, mirrored=mirrored).accuracy
    helps = both > single
    print(f"Validation accuracy: {single:.2%} from the images alone, {both:.2%} with mirror "
          f"averaging ({100 * (both - single):+.2f} points), so mirror averaging is "
          f"{'on' if helps else 'off'}.")
    return helps


def accuracy(y_true, y_pred) -> float:
    """Fraction of predictions equal to the labels."""
    y_true, y_pred = _check_labels(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true, y_pred, num_classes=len(CLASS_NAMES)) -> np.ndarray:
    """Counts: entry [i, j] is the number of images of true class i predicted as class j."""
    y_true, y_pred = _check_labels(y_true, y_pred)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def classification_table(y_true, y_pred, class_names=CLASS_NAMES) -> pd.DataFrame:
    """Precision, recall and F1 per class in percent, the number of images, and their mean."""
    matrix = confusion_matrix(y_true, y_pred, len(class_names))
    hits = np.diag(matrix).astype(float)
    predicted, support = matrix.sum(axis=0), matrix.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, hits / predicted, 0.0)
        recall = np.where(support > 0, hits / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    table = pd.DataFrame({"precision %": 100 * precision, "recall %": 100 * recall,
                          "F1 %": 100 * f1, "images": support},
                         index=pd.Index(class_names, name="class"))
    table.loc["mean (all classes)"] = [100 * precision.mean(), 100 * recall.mean(),
                                       100 * f1.mean(), support.sum()]
    return table.astype({"images": int}).round(1)


def _check_labels(y_true, y_pred):
    y_true, y_pred = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{len(y_true)} labels but {len(y_pred)} predictions: pass one "
                         "prediction per image, in the same order.")
    return y_true.astype(np.int64), y_pred.astype(np.int64)
