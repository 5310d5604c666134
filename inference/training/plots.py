"""The PNG plots in a model directory (matplotlib, Agg): training curves, the confusion matrix,
and for cross-validated models the held-out loss by epoch and the reliability diagram."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..calibration import Reliability
from ..preprocessing import CLASS_NAMES


def plot_training_curves(history: dict[str, list[float]], path: Path, *, best_epoch: int | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for ax, metric, title in ((axes[0], "loss", "Loss"), (axes[1], "accuracy", "Accuracy")):
        if history.get(metric):
            ax.plot(epochs, history[metric], marker="o", markersize=3, label="train")
        if history.get(f"val_{metric}"):
            ax.plot(epochs, history[f"val_{metric}"], marker="o", markersize=3, label="validation")
        if metric == "accuracy" and history.get("val_balanced_accuracy"):
            ax.plot(
                epochs,
                history["val_balanced_accuracy"],
                marker="s",
                markersize=3,
                linestyle=":",
                label="validation, balanced",
            )
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label="weights kept")
        ax.set_title(title + (" (class-weighted)" if metric == "loss" else ""))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    array = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(5, 4.4), dpi=100)
    image = ax.imshow(array, cmap="Blues")
    ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES)
    ax.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = array.max() / 2 if array.size and array.max() else 0
    for i in range(array.shape[0]):
        for j in range(array.shape[1]):
            ax.text(
                j,
                i,
                str(array[i, j]),
                ha="center",
                va="center",
                color="white" if array[i, j] > threshold else "black",
            )
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_reliability(before: Reliability, after: Reliability, path: Path) -> None:
    """Reliability diagram: top-label confidence against accuracy, before and after calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    for curve, label, marker in ((before, "before", "o"), (after, "after", "s")):
        points = [(c, a) for c, a in zip(curve.confidence, curve.accuracy, strict=True) if c is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker=marker, label=f"{label} calibration (ECE {curve.ece:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence of the top label")
    ax.set_ylabel("how often the top label was right")
    ax.set_title("Reliability, out-of-fold slices")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_cv_curves(val_loss: np.ndarray, path: Path, *, chosen_epoch: int) -> None:
    """Each fold's held-out loss by epoch, their mean, and the one epoch count chosen from it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, val_loss.shape[1] + 1)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for fold, losses in enumerate(val_loss, start=1):
        ax.plot(epochs, losses, linewidth=1, alpha=0.5, label=f"fold {fold}")
    ax.plot(epochs, val_loss.mean(axis=0), color="black", linewidth=2, label="mean over folds")
    ax.axvline(
        chosen_epoch, color="grey", linestyle="--", linewidth=1, label=f"chosen: {chosen_epoch} epochs"
    )
    ax.set_xlabel("epoch")
    ax.set_ylabel("held-out loss (class-weighted)")
    ax.set_title("Cross-validation: held-out loss by epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
