"""`train`: one run from a labelled folder to a model directory, in named steps (prepare the
data and the split, weigh the classes, fit, save, evaluate, plot, write the card)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import CARD_FILE, CARD_MARKDOWN_FILE, CONFUSION_PLOT, CURVES_PLOT, WEIGHTS_FILE, file_sha256
from ..preprocessing import CLASS_NAMES, IMAGE_SIZE
from .card import caveats_for, comparison_entry, load_card, write_card
from .data import (
    DATASET_CITATION,
    DATASET_DOI,
    PREPROCESSING_VERSION,
    Printer,
    Record,
    limit_records,
    load_images,
    read_manifest,
    unique_records,
)
from .fit import FitResult, TrainConfig, fit_model, predict_probabilities, set_seeds
from .metrics import class_weights_for, classification_metrics, size_shortcut_check
from .plots import plot_confusion_matrix, plot_training_curves
from .split import SPLITS, patient_block_split


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """The images a run uses, their labels and their patient-disjoint split."""

    images_listed: int
    duplicates_dropped: int
    records: list[Record]
    gray: np.ndarray
    labels: np.ndarray
    assignment: np.ndarray
    split: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class SavedWeights:
    sha256: str
    size_bytes: int


@dataclasses.dataclass(frozen=True)
class Evaluation:
    test: dict[str, Any]  # the card's "metrics"
    validation: dict[str, Any]
    shortcut: dict[str, Any]


def prepare_data(config: TrainConfig, *, echo: Printer = print) -> PreparedData:
    """Read the dataset, drop duplicates, apply --limit, load the pixels and split by patient."""
    all_records = read_manifest(config.data_dir)
    records = limit_records(unique_records(all_records), config.limit)
    duplicates_dropped = len(all_records) - len(unique_records(all_records))
    echo(
        f"{len(all_records)} images listed, {duplicates_dropped} byte-identical duplicates dropped, "
        f"{len(records)} used" + (f" (--limit {config.limit} per class)" if config.limit else "")
    )
    gray = load_images(config.data_dir, records, cache_dir=config.cache_dir, echo=echo)
    labels = np.array([CLASS_NAMES.index(r.label) for r in records], dtype=np.int64)
    assignment, split = patient_block_split(records, gray, fractions=config.fractions)
    for label, desc in split["classes"].items():
        echo(
            f"  {label:<9} "
            + "  ".join(f"{s} {desc[s]['count']:>3} (seq {desc[s]['sequence_range']})" for s in SPLITS)
        )
    return PreparedData(
        images_listed=len(all_records),
        duplicates_dropped=duplicates_dropped,
        records=records,
        gray=gray,
        labels=labels,
        assignment=assignment,
        split=split,
    )


def _class_weights(config: TrainConfig, data: PreparedData, *, echo: Printer) -> dict[int, float]:
    train_mask = data.assignment == 0
    if not train_mask.any():
        raise ValueError("the training block is empty; use more images")
    weights = (
        class_weights_for(data.labels[train_mask])
        if config.class_weights
        else {c: 1.0 for c in range(len(CLASS_NAMES))}
    )
    echo("class weights: " + ", ".join(f"{CLASS_NAMES[c]} {w:.2f}" for c, w in weights.items()))
    return weights


def _save_weights(model: Any, out_dir: Path) -> SavedWeights:
    weights_path = out_dir / WEIGHTS_FILE
    model.save(weights_path)
    sha = file_sha256(weights_path)
    return SavedWeights(sha256=sha, size_bytes=weights_path.stat().st_size)


def _evaluate(config: TrainConfig, data: PreparedData, model: Any) -> Evaluation:
    """Metrics on the test and validation blocks, and the size-only shortcut on the same split."""
    val_mask, test_mask = data.assignment == 1, data.assignment == 2
    return Evaluation(
        test=classification_metrics(
            data.labels[test_mask], predict_probabilities(model, data.gray[test_mask])
        ),
        validation=classification_metrics(
            data.labels[val_mask], predict_probabilities(model, data.gray[val_mask])
        ),
        shortcut=size_shortcut_check(data.records, data.assignment, seed=config.seed),
    )


def _write_plots(out_dir: Path, fitted: FitResult, test_metrics: dict[str, Any]) -> None:
    plot_training_curves(fitted.history, out_dir / CURVES_PLOT, best_epoch=fitted.best_epoch)
    plot_confusion_matrix(
        test_metrics["confusion_matrix"], out_dir / CONFUSION_PLOT, title="Held-out test block"
    )


def train(config: TrainConfig, *, echo: Printer = print) -> dict[str, Any]:
    """Train, evaluate on the held-out test block and write the model directory. Returns the card."""
    from ..runtime import configure_tensorflow

    configure_tensorflow()
    started = time.monotonic()
    set_seeds(config.seed)
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    data = prepare_data(config, echo=echo)
    class_weights = _class_weights(config, data, echo=echo)
    fitted = fit_model(config, data.gray, data.labels, data.assignment, class_weights, echo=echo)
    saved = _save_weights(fitted.model, out_dir)
    evaluation = _evaluate(config, data, fitted.model)
    _write_plots(out_dir, fitted, evaluation.test)

    card = _card(config, data, class_weights, fitted, saved, evaluation)
    card["total_seconds"] = round(time.monotonic() - started, 1)
    card["caveats"] = caveats_for(card)
    write_card(out_dir, card)
    echo(
        f"test block: balanced accuracy {evaluation.test['balanced_accuracy']}, accuracy "
        f"{evaluation.test['accuracy']}; size-only shortcut: balanced accuracy "
        f"{evaluation.shortcut['balanced_accuracy']}"
    )
    echo(f"wrote {out_dir}/{WEIGHTS_FILE} (sha256 {saved.sha256}), {CARD_FILE}, {CARD_MARKDOWN_FILE}")
    return card


def _card(
    config: TrainConfig,
    data: PreparedData,
    class_weights: dict[int, float],
    fitted: FitResult,
    saved: SavedWeights,
    evaluation: Evaluation,
) -> dict[str, Any]:
    """card.json's content, in its order, up to `total_seconds` (set by the caller)."""
    from ..network import PUBLISHED_PARAMS_WITHOUT_DROPOUT, VARIANT_DESCRIPTIONS, build_model

    params_without_dropout = build_model(config.variant, dropout=0).count_params()
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    comparisons = [comparison_entry(load_card(d)) for d in config.compare_with]
    return {
        "name": f"lungcnn-{config.variant}-{created:%Y%m%d-%H%M}-{saved.sha256[:8]}",
        "created_at": created.isoformat(),
        "class_names": list(CLASS_NAMES),
        "image_size": IMAGE_SIZE,
        "preprocessing": (
            "decode by content (JPEG/PNG), grayscale, pad to square centred on black, "
            f"bilinear resize to {IMAGE_SIZE}x{IMAGE_SIZE}, 3 identical channels, float32 in [0, 1] "
            f"({PREPROCESSING_VERSION})"
        ),
        "architecture": {
            "variant": config.variant,
            "description": VARIANT_DESCRIPTIONS[config.variant],
            "conv_filters": [32, 64, 64, 64, 128, 128],
            "dense_units": 64,
            "dropout": config.dropout,
            "parameters": int(fitted.model.count_params()),
            "parameters_without_dropout": int(params_without_dropout),
            "published_parameters_without_dropout": PUBLISHED_PARAMS_WITHOUT_DROPOUT,
        },
        "weights": {"file": WEIGHTS_FILE, "sha256": saved.sha256, "size_bytes": saved.size_bytes},
        "dataset": {
            "name": "IQ-OTH/NCCD lung cancer dataset (development copy)",
            "citation": DATASET_CITATION,
            "doi": DATASET_DOI,
            "path": str(config.data_dir),
            "images_listed": data.images_listed,
            "duplicates_dropped": data.duplicates_dropped,
            "images_used": len(data.records),
            "limit_per_class": config.limit,
        },
        "split": data.split,
        "counts": {
            split_name: {
                name: int(((data.assignment == i) & (data.labels == c)).sum())
                for c, name in enumerate(CLASS_NAMES)
            }
            for i, split_name in enumerate(SPLITS)
        },
        "training": {
            "optimizer": "Adam",
            "learning_rate": config.learning_rate,
            "batch_size": config.batch_size,
            "max_epochs": config.epochs,
            "epochs_run": fitted.epochs_run,
            "best_epoch": fitted.best_epoch,
            "early_stopping": {
                "monitor": fitted.monitor,
                "patience": config.patience,
                "restore_best_weights": True,
            },
            "reduce_lr_on_plateau": config.variant != "published",
            "class_weights": {CLASS_NAMES[c]: round(w, 4) for c, w in class_weights.items()},
            "seed": config.seed,
            "seconds": round(fitted.seconds, 1),
            "history": fitted.history,
        },
        "metrics": evaluation.test,
        "validation_metrics": evaluation.validation,
        "shortcut_check": evaluation.shortcut,
        "comparisons": comparisons,
        "plots": {"training_curves": CURVES_PLOT, "confusion_matrix": CONFUSION_PLOT},
        "command": config.command,
        "environment": _environment(),
    }


def _environment() -> dict[str, Any]:
    import keras
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "tf_threads": {
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        },
    }
