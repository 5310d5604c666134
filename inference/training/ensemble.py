"""From a cross-validation run to the shipped model: the fold models as an ensemble, calibrated
on their out-of-fold predictions, with the study rule, the not-assessable limits, every figure of
the card (mean ± sd over folds and pooled out-of-fold) and its plots.

Everything here is computed from the run's saved out-of-fold predictions (`cv_predictions.npz`,
kept in the model directory), so the card can be rebuilt and checked without training again.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import CARD_FILE, CONFUSION_PLOT, file_sha256
from ..calibration import apply_temperature, fit_temperature, reliability
from ..preprocessing import CLASS_NAMES
from .assessability_fit import dataset_features, fit_assessability
from .cv_card import write_cv_card
from .data import DATASET_CITATION, DATASET_DOI, read_manifest
from .metrics import classification_metrics
from .plots import plot_confusion_matrix, plot_cv_curves, plot_reliability
from .study_rule import fit_study_rule, pairwise_auc, pseudo_studies

CV_PREDICTIONS = "cv_predictions.npz"
RELIABILITY_PLOT = "reliability.png"
CV_CURVES_PLOT = "cv_curves.png"

Printer = Callable[[str], None]
CARD_NOTES = [
    "Why the fold models as an ensemble rather than one network retrained on all the data: the "
    "out-of-fold figures describe exactly these members (a retrained network would have none of its "
    "own), averaging them steadies the run-to-run swings seen in every fold, and the five members "
    "still classify a 200-slice study well within a minute on two CPU cores.",
    "The ensemble's members are the fold models; each out-of-fold figure is that of one member on "
    "patients it never saw, so the ensemble itself is, if anything, slightly better than stated.",
    "Calibration was fitted on those single-member predictions; averaging members softens "
    "probabilities a little, so the ensemble may be slightly under-confident.",
    "Benign against normal on one slice is the hard part; where the cross-validated AUC is below the "
    "rule's bar, results say 'not malignant' without choosing between them.",
    "The not-assessable check uses image statistics: it catches photos, documents, blank and noise "
    "images, not a CT slice of another body region.",
]


def _mean_sd(values: list[float | None]) -> dict[str, float | None]:
    present = [v for v in values if v is not None]
    return {
        "mean": round(float(np.mean(present)), 4) if present else None,
        "sd": round(float(np.std(present)), 4) if present else None,
    }


def cv_figures(probabilities: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> dict[str, Any]:
    """Per-fold metrics as mean ± sd, and the same metrics on all out-of-fold slices pooled."""
    per_fold = [
        classification_metrics(labels[folds == k], probabilities[folds == k]) for k in np.unique(folds)
    ]
    pooled = classification_metrics(labels, probabilities)
    return {
        "balanced_accuracy": {
            "pooled": pooled["balanced_accuracy"],
            **_mean_sd([m["balanced_accuracy"] for m in per_fold]),
        },
        "recall": {
            name: {
                "pooled": pooled["per_class"][name]["recall"],
                **_mean_sd([m["per_class"][name]["recall"] for m in per_fold]),
            }
            for name in CLASS_NAMES
        },
        "pairwise_auc": {
            "malignant_vs_rest": pooled["per_class"]["malignant"]["roc_auc"],
            "benign_vs_normal": pairwise_auc(probabilities, labels, "benign", "normal"),
        },
        "confusion_matrix": pooled["confusion_matrix"],
    }


def build_ensemble(
    *,
    cv_dir: Path,
    data_dir: Path,
    out_dir: Path,
    name: str,
    members: list[Path],
    command: str,
    notes: list[str] | None = None,
    echo: Printer = print,
) -> dict[str, Any]:
    """Write the model directory `out_dir` from a cross-validation run (`cv_dir/cv_result.npz`)
    and its fold models (`members`, Keras files in fold order)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cv = dict(np.load(cv_dir / "cv_result.npz", allow_pickle=False))
    shutil.copyfile(cv_dir / "cv_result.npz", out_dir / CV_PREDICTIONS)
    member_files = []
    for index, source in enumerate(members, start=1):
        target = out_dir / f"member{index}.keras"
        shutil.copyfile(source, target)
        member_files.append({"file": target.name, "sha256": file_sha256(target), "fold": index})
    card = card_from_predictions(cv, data_dir=data_dir, out_dir=out_dir, echo=echo)
    settings = json.loads(str(cv["settings"])) if "settings" in cv else {}
    card.update(
        name=name,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        members=member_files,
        training=settings,
        reproduce=reproduce_steps(settings, command, cv_dir),
        notes=[*CARD_NOTES, *(notes or [])],
    )
    write_cv_card(out_dir, card)
    echo(f"wrote {out_dir / CARD_FILE}")
    return card


def reproduce_steps(settings: dict[str, Any], command: str, cv_dir: Path) -> list[str]:
    """The commands that rebuild this model directory, from the dataset to the card."""
    size = settings.get("image_size", "SIZE")
    train = (
        f"KERAS_BACKEND=jax python3 -m inference.training.device_cv --data var/device/data_{size}.npz "
        f"--out {cv_dir} --variant {settings.get('variant', 'bn_gap')} "
        f"--epochs {settings.get('epochs_requested', 40)} --batch-size {settings.get('batch_size', 32)} "
        f"--learning-rate {settings.get('learning_rate', 1e-3)} --seed {settings.get('seed', 1234)}"
    )
    return [
        "python -m inference.training.cv prep  # var/device/data_{384,512}.npz from the dataset",
        train + "  # on a GPU (JAX); KERAS_BACKEND=tensorflow runs it on the CPU, slowly",
        command,
    ]


def card_from_predictions(
    cv: dict[str, np.ndarray], *, data_dir: Path, out_dir: Path | None = None, echo: Printer = print
) -> dict[str, Any]:
    """Every measured figure of the card, from the saved out-of-fold predictions (and the
    dataset's slices, for the not-assessable limits). Writes the plots when `out_dir` is given."""
    labels = cv["labels"].astype(np.int64)
    folds = cv["fold_of"].astype(np.int64)
    raw = cv["oof_probs"].astype(np.float64)
    paths = [str(p) for p in cv["paths"]]
    temperature = fit_temperature(raw, labels)
    calibrated = apply_temperature(raw, temperature)
    before, after = reliability(raw, labels), reliability(calibrated, labels)
    echo(f"temperature {temperature:.3f}: ECE {before.ece:.3f} -> {after.ece:.3f}")
    by_path = {record.path: record for record in read_manifest(data_dir)}
    sequences = np.array([by_path[p].sequence for p in paths])
    fitted = fit_study_rule(calibrated, labels, pseudo_studies(labels, sequences, folds), folds)
    echo(f"study rule: {fitted.rule.as_dict()}")
    limits, assessability = fit_assessability(dataset_features(data_dir, [by_path[p] for p in paths]), folds)
    echo(
        f"not assessable: false flags {assessability['false_flag_rate']:.3f}, "
        f"caught {assessability['catch_rate']:.2f}"
    )
    figures = cv_figures(calibrated, labels, folds)
    chosen = int(cv["chosen_epoch"])
    if out_dir is not None:
        plot_reliability(before, after, out_dir / RELIABILITY_PLOT)
        plot_cv_curves(cv["val_loss"], out_dir / CV_CURVES_PLOT, chosen_epoch=chosen)
        plot_confusion_matrix(
            figures["confusion_matrix"], out_dir / CONFUSION_PLOT, title="Out-of-fold slices (calibrated)"
        )
    study = fitted.figures
    return {
        "class_names": list(CLASS_NAMES),
        "image_size": int(cv["image_size"]),
        "architecture": {"variant": str(cv["variant"])},
        "dataset": {"citation": DATASET_CITATION, "doi": DATASET_DOI, "slices": len(labels)},
        "cross_validation": {
            "folds": int(len(np.unique(folds))),
            "grouping": "contiguous blocks of each class's numbering (a patient's slices are consecutive)",
            "epochs_trained": int(cv["val_loss"].shape[1]),
            "chosen_epoch": chosen,
            "epoch_choice": "one epoch count for every fold, where the fold-averaged held-out loss is lowest",
        },
        "ensemble": "the fold models, probabilities averaged",
        "calibration": {
            "method": "temperature scaling fitted on the out-of-fold predictions",
            "temperature": round(temperature, 4),
            "ece_before": round(before.ece, 4),
            "ece_after": round(after.ece, 4),
        },
        "study_rule": fitted.rule.as_dict(),
        "assessability": {**assessability, "limits": limits.as_dict()},
        "slice_metrics": figures,
        "study_metrics": study,
        "metrics": {
            "source": "5-fold patient-grouped cross-validation, out-of-fold, calibrated",
            "balanced_accuracy": figures["balanced_accuracy"]["pooled"],
            "balanced_accuracy_sd": figures["balanced_accuracy"]["sd"],
            "malignant_sensitivity": study["sensitivity"]["pooled"],
            "specificity": study["specificity"]["pooled"],
            "malignant_auc": figures["pairwise_auc"]["malignant_vs_rest"],
            "benign_vs_normal_auc": figures["pairwise_auc"]["benign_vs_normal"],
            "ece": round(after.ece, 4),
        },
        "plots": {"reliability": RELIABILITY_PLOT, "cv_curves": CV_CURVES_PLOT, "confusion": CONFUSION_PLOT},
    }
