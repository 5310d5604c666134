"""What the card reports: classification metrics, balanced class weights, and the size-only
shortcut check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..preprocessing import CLASS_NAMES
from .data import Record


def class_weights_for(labels: np.ndarray) -> dict[int, float]:
    """Balanced weights: n / (k * n_c), for classes present."""
    counts = np.bincount(labels, minlength=len(CLASS_NAMES))
    present = counts > 0
    k = int(present.sum())
    return {
        int(c): (float(len(labels)) / (k * int(counts[c])) if counts[c] else 0.0)
        for c in range(len(CLASS_NAMES))
    }


def classification_metrics(y_true: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """accuracy, balanced accuracy (mean recall over the classes present), per-class precision /
    recall / F1 / support, confusion matrix (rows true, columns predicted), one-vs-rest ROC AUC."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    y_true = np.asarray(y_true, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    y_pred = probabilities.argmax(axis=1)
    labels = list(range(len(CLASS_NAMES)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    present = [c for c in labels if (y_true == c).any()]
    per_class: dict[str, dict[str, Any]] = {}
    aucs: dict[str, float | None] = {}
    for c in labels:
        name = CLASS_NAMES[c]
        positives = y_true == c
        auc: float | None = None
        if positives.any() and (~positives).any():
            auc = float(roc_auc_score(positives, probabilities[:, c]))
        aucs[name] = auc
        per_class[name] = {
            "precision": round(float(precision[c]), 4),
            "recall": round(float(recall[c]), 4),
            "f1": round(float(f1[c]), 4),
            "support": int(support[c]),
            "roc_auc": None if auc is None else round(auc, 4),
        }
    valid_aucs = [a for a in aucs.values() if a is not None]
    return {
        "n": int(len(y_true)),
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 4) if len(y_true) else None,
        "balanced_accuracy": (round(float(np.mean([recall[c] for c in present])), 4) if present else None),
        "macro_f1": round(float(np.mean([f1[c] for c in present])), 4) if present else None,
        "roc_auc_ovr_macro": round(float(np.mean(valid_aucs)), 4) if valid_aucs else None,
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "confusion_matrix_axes": "rows: true class, columns: predicted class, in class_names order",
    }


def size_shortcut_check(
    records: Sequence[Record], assignment: np.ndarray, *, seed: int = 0
) -> dict[str, Any]:
    """What a classifier given only each image's width and height achieves on the same split. If
    the CNN is not clearly above this, it may have learned the image size rather than anatomy."""
    from sklearn.tree import DecisionTreeClassifier

    sizes = np.array([[r.width, r.height] for r in records], dtype=np.float64)
    labels = np.array([CLASS_NAMES.index(r.label) for r in records])
    train, test = assignment == 0, assignment == 2
    result: dict[str, Any] = {
        "features": ["width", "height"],
        "classifier": "decision tree (depth 3, balanced class weights), trained on the train block",
    }
    if not train.any() or not test.any():
        result.update({"balanced_accuracy": None, "accuracy": None})
        return result
    tree = DecisionTreeClassifier(max_depth=3, class_weight="balanced", random_state=seed)
    tree.fit(sizes[train], labels[train])
    probs = np.zeros((int(test.sum()), len(CLASS_NAMES)))
    probs[:, tree.classes_] = tree.predict_proba(sizes[test])
    metrics = classification_metrics(labels[test], probs)
    result.update(
        {
            "balanced_accuracy": metrics["balanced_accuracy"],
            "accuracy": metrics["accuracy"],
            "recall": {name: metrics["per_class"][name]["recall"] for name in CLASS_NAMES},
        }
    )
    return result
