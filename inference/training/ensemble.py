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
from .cv import RESULT_FILE
from .cv_card import write_cv_card
from .data import DATASET_CITATION, DATASET_DOI, read_manifest
from .intervals import card_intervals
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
    "own). The ensemble itself cannot be scored out-of-fold: each slice was seen by four of its five "
    "members. What five members cost to serve is measured by `python manage.py serving_cost`.",
    "Calibration was fitted on single-member predictions; averaging members softens probabilities a "
    "little, so the ensemble may be slightly under-confident.",
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
            "malignant_vs_rest": {
                "pooled": pooled["per_class"]["malignant"]["roc_auc"],
                **_mean_sd([m["per_class"]["malignant"]["roc_auc"] for m in per_fold]),
            },
            "benign_vs_normal": {
                "pooled": pairwise_auc(probabilities, labels, "benign", "normal"),
                **_mean_sd(
                    [
                        pairwise_auc(probabilities[folds == k], labels[folds == k], "benign", "normal")
                        for k in np.unique(folds)
                    ]
                ),
            },
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
    compare: list[Path] | None = None,
    echo: Printer = print,
) -> dict[str, Any]:
    """Write the model directory `out_dir` from a cross-validation run (`cv_dir/cv_result.npz`)
    and its fold models (`members`, Keras files in fold order)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cv = dict(np.load(cv_dir / RESULT_FILE, allow_pickle=False))
    shutil.copyfile(cv_dir / RESULT_FILE, out_dir / CV_PREDICTIONS)
    member_files = []
    for index, source in enumerate(members, start=1):
        target = out_dir / f"member{index}.keras"
        shutil.copyfile(source, target)
        member_files.append({"file": target.name, "sha256": file_sha256(target), "fold": index})
    by_path = {record.path: record for record in read_manifest(data_dir)}
    features = dataset_features(data_dir, [by_path[str(p)] for p in cv["paths"]])
    card = card_from_predictions(cv, data_dir=data_dir, out_dir=out_dir, features=features, echo=echo)
    settings = json.loads(str(cv["settings"])) if "settings" in cv else {}
    runs = [(cv_dir, cv, card)]
    for other in compare or []:
        other_cv = dict(np.load(other / RESULT_FILE, allow_pickle=False))
        quiet = card_from_predictions(other_cv, data_dir=data_dir, features=features, echo=lambda _: None)
        runs.append((other, other_cv, quiet))
    card.update(
        name=name,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        members=member_files,
        training={**settings, "seconds": round(float(cv["seconds"]), 1) if "seconds" in cv else None},
        comparisons=[
            run_summary(path, run_cv, run_card, shipped=path == cv_dir) for path, run_cv, run_card in runs
        ],
        reproduce=reproduce_steps([(path, run) for path, run, _ in runs], command),
        notes=[*CARD_NOTES, *(notes or [])],
    )
    write_cv_card(out_dir, card)
    echo(f"wrote {out_dir / CARD_FILE}")
    return card


def run_summary(
    path: Path, cv: dict[str, np.ndarray], card: dict[str, Any], *, shipped: bool
) -> dict[str, Any]:
    """One cross-validation run as the card's comparison table shows it."""
    settings = json.loads(str(cv["settings"])) if "settings" in cv else {}
    slices, study = card["slice_metrics"], card["study_metrics"]
    return {
        "run": path.name,
        "shipped": shipped,
        "image_size": card["image_size"],
        "learning_rate": settings.get("learning_rate"),
        "chosen_epoch": card["cross_validation"]["chosen_epoch"],
        "held_out_loss": round(float(cv["mean_val_loss"].min()), 4) if "mean_val_loss" in cv else None,
        "balanced_accuracy": slices["balanced_accuracy"],
        "recall": {name: slices["recall"][name]["pooled"] for name in CLASS_NAMES},
        "specificity": study["specificity"]["pooled"],
        "sensitivity": study["sensitivity"]["pooled"],
        "ece_after": card["calibration"]["ece_after"],
    }


def reproduce_steps(runs: list[tuple[Path, dict[str, np.ndarray]]], command: str) -> list[str]:
    """The commands that rebuild this model directory: the data, each run, the card."""
    steps = ["python -m inference.training.cv prep  # var/device/data_{384,512}.npz from the dataset"]
    for cv_dir, cv in runs:
        settings = json.loads(str(cv["settings"])) if "settings" in cv else {}
        steps.append(
            f"KERAS_BACKEND=jax python3 -m inference.training.device_cv --data "
            f"var/device/data_{settings.get('image_size', 'SIZE')}.npz --out {cv_dir} "
            f"--variant {settings.get('variant', 'bn_gap')} --epochs {settings.get('epochs_requested', 40)} "
            f"--batch-size {settings.get('batch_size', 32)} --learning-rate {settings.get('learning_rate')} "
            f"--seed {settings.get('seed', 1234)}"
        )
    steps.append(command)
    steps.append("# device_cv runs on a GPU with JAX; KERAS_BACKEND=tensorflow runs it on the CPU, slowly")
    return steps


def card_from_predictions(
    cv: dict[str, np.ndarray],
    *,
    data_dir: Path,
    out_dir: Path | None = None,
    features: list[dict[str, float]] | None = None,
    echo: Printer = print,
) -> dict[str, Any]:
    """Every measured figure of the card, from the saved out-of-fold predictions (and the
    dataset's slices, for the not-assessable limits: pass their `features` to skip decoding them
    again). Writes the plots when `out_dir` is given."""
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
    if features is None:
        features = dataset_features(data_dir, [by_path[p] for p in paths])
    limits, assessability = fit_assessability(features, folds)
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
    ece_by_fold = [
        (
            reliability(raw[folds == k], labels[folds == k]).ece,
            reliability(calibrated[folds == k], labels[folds == k]).ece,
        )
        for k in np.unique(folds)
    ]
    source = f"{len(np.unique(folds))}-fold patient-grouped cross-validation, out-of-fold, calibrated"
    intervals = card_intervals(
        cv, sequences=sequences, temperature=temperature, rule=fitted.rule, assessability=assessability
    )
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
            "ece_before_folds": _mean_sd([b for b, _ in ece_by_fold]),
            "ece_after_folds": _mean_sd([a for _, a in ece_by_fold]),
        },
        "study_rule": fitted.rule.as_dict(),
        "assessability": {**assessability, "limits": limits.as_dict()},
        "slice_metrics": figures,
        "study_metrics": study,
        "intervals": intervals,
        "metrics": {
            "source": source,
            "balanced_accuracy": figures["balanced_accuracy"]["pooled"],
            "balanced_accuracy_sd": figures["balanced_accuracy"]["sd"],
            "malignant_sensitivity": study["sensitivity"]["pooled"],
            "specificity": study["specificity"]["pooled"],
            "malignant_auc": figures["pairwise_auc"]["malignant_vs_rest"]["pooled"],
            "benign_vs_normal_auc": figures["pairwise_auc"]["benign_vs_normal"]["pooled"],
            "ece": round(after.ece, 4),
        },
        "plots": {"reliability": RELIABILITY_PLOT, "cv_curves": CV_CURVES_PLOT, "confusion": CONFUSION_PLOT},
    }
