"""Split, train, evaluate, and write a model directory with its card.

A model directory holds `model.keras`, `card.json`, `MODEL_CARD.md` and PNG plots. The split is
patient-disjoint: slices of one patient are numbered consecutively in this dataset, so each class
is cut into contiguous blocks of `sequence` (train, then validation, then test), never image by
image. Byte-identical duplicates are counted once.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .hashing import file_sha256
from .preprocessing import CLASS_NAMES, IMAGE_SIZE, gray_to_input, preprocess_gray

WEIGHTS_FILE = "model.keras"
CARD_FILE = "card.json"
CARD_MARKDOWN_FILE = "MODEL_CARD.md"
CURVES_PLOT = "training_curves.png"
CONFUSION_PLOT = "confusion_matrix.png"
# Bump when preprocessing changes, so a stale cache is never reused.
PREPROCESSING_VERSION = "pad-square-bilinear-256-v1"
DATASET_CITATION = (
    "Alyasriy, H. & Al-Huseiny, M., The IQ-OTH/NCCD lung cancer dataset, "
    "Mendeley Data, doi:10.17632/bhmdr45bh2"
)
DATASET_DOI = "10.17632/bhmdr45bh2"

Printer = Callable[[str], None]


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Record:
    path: str  # relative to the dataset folder
    label: str
    sequence: int
    width: int
    height: int
    sha256: str
    duplicate_of: str


def _sequence_from_name(name: str, fallback: int) -> int:
    numbers = re.findall(r"\d+", Path(name).stem)
    return int(numbers[-1]) if numbers else fallback


def read_manifest(data_dir: Path) -> list[Record]:
    """Records from manifest.csv, or, where there is none, from the class subfolders (normal/,
    benign/, malignant/), with sequence taken from the number in the file name and duplicates
    found by content hash."""
    data_dir = Path(data_dir)
    manifest = data_dir / "manifest.csv"
    if manifest.exists():
        with manifest.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        records = [
            Record(
                path=row["path"],
                label=row["label"],
                sequence=int(row["sequence"]),
                width=int(row["width"]),
                height=int(row["height"]),
                sha256=row["sha256"],
                duplicate_of=row.get("duplicate_of", "") or "",
            )
            for row in rows
            if row["label"] in CLASS_NAMES
        ]
        if not records:
            raise ValueError(f"{manifest} lists no image of the classes {', '.join(CLASS_NAMES)}")
        return records

    records = []
    seen: dict[str, str] = {}
    for label in CLASS_NAMES:
        folder = data_dir / label
        if not folder.is_dir():
            continue
        files = sorted(
            (p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"}),
            key=lambda p: (_sequence_from_name(p.name, 0), p.name),
        )
        for index, file in enumerate(files, start=1):
            data = file.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
            relative = f"{label}/{file.name}"
            records.append(
                Record(
                    path=relative,
                    label=label,
                    sequence=_sequence_from_name(file.name, index),
                    width=width,
                    height=height,
                    sha256=digest,
                    duplicate_of=seen.get(digest, ""),
                )
            )
            seen.setdefault(digest, relative)
    if not records:
        raise ValueError(
            f"{data_dir} has neither manifest.csv nor class subfolders ({', '.join(CLASS_NAMES)})"
        )
    return records


def unique_records(records: Sequence[Record]) -> list[Record]:
    """Each byte-identical image once (the first occurrence)."""
    seen: set[str] = set()
    unique = []
    for record in records:
        if record.duplicate_of or record.sha256 in seen:
            continue
        seen.add(record.sha256)
        unique.append(record)
    return unique


def limit_records(records: Sequence[Record], limit: int | None) -> list[Record]:
    """At most `limit` images per class, the lowest sequence numbers (for tiny runs and tests)."""
    if not limit:
        return list(records)
    kept: list[Record] = []
    for label in CLASS_NAMES:
        of_class = sorted((r for r in records if r.label == label), key=lambda r: r.sequence)
        kept.extend(of_class[:limit])
    return kept


def load_images(
    data_dir: Path,
    records: Sequence[Record],
    *,
    cache_dir: Path | None = None,
    echo: Printer = print,
) -> np.ndarray:
    """uint8 (N, IMAGE_SIZE, IMAGE_SIZE) as `preprocess_gray` makes them; cached as .npz keyed
    by the files' hashes and the preprocessing version, so reruns skip decoding."""
    key = hashlib.sha256(
        (PREPROCESSING_VERSION + "\n" + "\n".join(r.sha256 for r in records)).encode()
    ).hexdigest()[:16]
    cache_file = Path(cache_dir) / f"images-{key}.npz" if cache_dir else None
    if cache_file and cache_file.exists():
        with np.load(cache_file) as cached:
            images = cached["images"]
        if images.shape == (len(records), IMAGE_SIZE, IMAGE_SIZE):
            echo(f"Loaded {len(records)} preprocessed images from cache {cache_file}")
            return images
    started = time.monotonic()
    images = np.empty((len(records), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for index, record in enumerate(records):
        images[index] = preprocess_gray((Path(data_dir) / record.path).read_bytes())
    echo(f"Decoded and preprocessed {len(records)} images in {time.monotonic() - started:.1f}s")
    if cache_file:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, images=images)
        os.replace(tmp, cache_file)
    return images


# --------------------------------------------------------------------------------------------
# Patient-disjoint split
# --------------------------------------------------------------------------------------------

SPLITS = ("train", "val", "test")


def _thumbnail_vectors(images: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-norm 64x64 vectors for correlating slices."""
    n = images.shape[0]
    small = images.reshape(n, 64, IMAGE_SIZE // 64, 64, IMAGE_SIZE // 64).mean(axis=(2, 4))
    flat = small.reshape(n, -1).astype(np.float64)
    flat -= flat.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    return flat / np.where(norms == 0, 1, norms)


def patient_block_split(
    records: Sequence[Record],
    images: np.ndarray,
    *,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    snap_window: float = 0.05,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Assign each record to train (0), val (1) or test (2) by contiguous blocks of `sequence`
    within each class: the lowest numbers train, the highest test.

    Each cut is moved, within `snap_window` of the class's size, to the pair of neighbouring
    slices that correlate least: the likeliest boundary between two patients, so that one
    patient is less likely to straddle two blocks. Returns the assignment and a description for
    the card.
    """
    if abs(sum(fractions) - 1) > 1e-6:
        raise ValueError("fractions must sum to 1")
    assignment = np.full(len(records), -1, dtype=np.int64)
    vectors = _thumbnail_vectors(images)
    description: dict[str, Any] = {
        "method": (
            "contiguous blocks of `sequence` within each class (train lowest, test highest), "
            "byte-identical duplicates counted once, each cut moved to the least-correlated "
            f"neighbouring pair within ±{snap_window:.0%} of the class size"
        ),
        "fractions": dict(zip(SPLITS, fractions, strict=True)),
        "classes": {},
    }
    for label in CLASS_NAMES:
        indices = [i for i, r in enumerate(records) if r.label == label]
        indices.sort(key=lambda i: records[i].sequence)
        n = len(indices)
        if n == 0:
            continue
        # neighbour_corr[k]: correlation between the k-th and (k+1)-th slice of the class.
        neighbour_corr = np.array(
            [float(vectors[indices[k]] @ vectors[indices[k + 1]]) for k in range(n - 1)]
        )
        cuts: list[int] = []  # a cut at k means positions < k are before it
        cut_info = []
        n_cuts = len(fractions) - 1
        lower = 1
        for j, cumulative in enumerate(np.cumsum(fractions)[:-1]):
            target = int(round(cumulative * n))
            # Leave at least one slice for every later block (where there are enough slices).
            upper = n - (n_cuts - j) if n > n_cuts else n
            target = min(max(target, lower), upper)
            window = max(1, int(round(snap_window * n)))
            lo, hi = max(lower, target - window), min(upper, target + window)
            if lo > hi or n < 3:
                cut = min(max(target, lower), n)
            else:
                cut = min(range(lo, hi + 1), key=lambda k: (neighbour_corr[k - 1], abs(k - target)))
            cuts.append(cut)
            lower = min(cut + 1, n)
            if 0 < cut < n:
                cut_info.append(
                    {
                        "after_sequence": records[indices[cut - 1]].sequence,
                        "before_sequence": records[indices[cut]].sequence,
                        "neighbour_correlation": round(float(neighbour_corr[cut - 1]), 3),
                    }
                )
        bounds = [0, *cuts, n]
        class_desc: dict[str, Any] = {"n": n, "cuts": cut_info}
        for split_index, split in enumerate(SPLITS):
            block = indices[bounds[split_index] : bounds[split_index + 1]]
            for i in block:
                assignment[i] = split_index
            sequences = [records[i].sequence for i in block]
            class_desc[split] = {
                "count": len(block),
                "sequence_range": [min(sequences), max(sequences)] if sequences else None,
            }
        class_desc["median_neighbour_correlation"] = (
            round(float(np.median(neighbour_corr)), 3) if len(neighbour_corr) else None
        )
        description["classes"][label] = class_desc

    # Leakage check: how similar is each test slice to its closest training slice, compared with
    # how similar consecutive slices of one patient are.
    train_idx = np.flatnonzero(assignment == 0)
    test_idx = np.flatnonzero(assignment == 2)
    if len(train_idx) and len(test_idx):
        nearest = (vectors[test_idx] @ vectors[train_idx].T).max(axis=1)
        description["leakage_check"] = {
            "test_to_nearest_train_correlation_median": round(float(np.median(nearest)), 3),
            "test_to_nearest_train_correlation_max": round(float(nearest.max()), 3),
            "test_slices_with_nearest_train_correlation_over_0.95": int((nearest > 0.95).sum()),
        }
    return assignment, description


def class_weights_for(labels: np.ndarray) -> dict[int, float]:
    """Balanced weights: n / (k * n_c), for classes present."""
    counts = np.bincount(labels, minlength=len(CLASS_NAMES))
    present = counts > 0
    k = int(present.sum())
    return {
        int(c): (float(len(labels)) / (k * int(counts[c])) if counts[c] else 0.0)
        for c in range(len(CLASS_NAMES))
    }


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Plots (matplotlib, Agg)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class TrainConfig:
    data_dir: Path
    out_dir: Path
    variant: str = "improved"
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 1e-3
    patience: int = 8
    dropout: float = 0.5
    seed: int = 1234
    limit: int | None = None
    class_weights: bool = True
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    cache_dir: Path | None = None
    compare_with: Sequence[Path] = ()
    command: str = ""


def set_seeds(seed: int) -> None:
    import keras
    import tensorflow as tf

    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # older TF or already configured
        pass


def make_dataset(
    gray: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    weights: np.ndarray | None = None,
) -> Any:
    """tf.data pipeline: uint8 grayscale -> float32 [0,1] with 3 channels, exactly as
    `gray_to_input` (and so `preprocess`) does."""
    import tensorflow as tf

    one_hot = np.eye(len(CLASS_NAMES), dtype=np.float32)[labels]
    tensors: tuple[Any, ...] = (gray, one_hot)
    if weights is not None:
        tensors = (gray, one_hot, weights.astype(np.float32))
    dataset = tf.data.Dataset.from_tensor_slices(tensors)
    if shuffle:
        dataset = dataset.shuffle(len(gray), seed=seed, reshuffle_each_iteration=True)

    def to_input(image: Any, *rest: Any) -> Any:
        x = tf.cast(image, tf.float32) / 255.0
        x = tf.repeat(x[..., tf.newaxis], 3, axis=-1)
        return (x, *rest)

    return dataset.batch(batch_size).map(to_input, num_parallel_calls=1).prefetch(1)


def predict_probabilities(model: Any, gray: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
    """Probabilities for uint8 grayscale slices (N, 256, 256)."""
    outputs = []
    for start in range(0, len(gray), batch_size):
        batch = gray_to_input(gray[start : start + batch_size])
        outputs.append(np.asarray(model(batch, training=False)))
    if not outputs:
        return np.zeros((0, len(CLASS_NAMES)), dtype=np.float32)
    return np.concatenate(outputs, axis=0)


def train(config: TrainConfig, *, echo: Printer = print) -> dict[str, Any]:
    """Train, evaluate on the held-out test block and write the model directory. Returns the card."""
    from .runtime import configure_tensorflow

    configure_tensorflow()
    import keras

    from .network import PUBLISHED_PARAMS_WITHOUT_DROPOUT, VARIANT_DESCRIPTIONS, build_model

    started = time.monotonic()
    set_seeds(config.seed)
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

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

    train_mask, val_mask, test_mask = (assignment == i for i in range(3))
    if not train_mask.any():
        raise ValueError("the training block is empty; use more images")
    weights = (
        class_weights_for(labels[train_mask])
        if config.class_weights
        else {c: 1.0 for c in range(len(CLASS_NAMES))}
    )
    echo("class weights: " + ", ".join(f"{CLASS_NAMES[c]} {w:.2f}" for c, w in weights.items()))

    model = build_model(config.variant, dropout=config.dropout, seed=config.seed)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=False,  # XLA was slower for these convolutions on CPU
    )
    weight_array = np.array([weights[int(c)] for c in labels], dtype=np.float32)
    train_ds = make_dataset(
        gray[train_mask],
        labels[train_mask],
        batch_size=config.batch_size,
        shuffle=True,
        seed=config.seed,
        weights=weight_array[train_mask],
    )
    val_ds = None
    if val_mask.any():
        # Validation loss weighted like the training loss, so early stopping watches the same
        # balanced objective rather than the majority classes.
        val_ds = make_dataset(
            gray[val_mask],
            labels[val_mask],
            batch_size=config.batch_size,
            shuffle=False,
            seed=config.seed,
            weights=weight_array[val_mask],
        )

    monitor = "val_loss" if val_ds is not None else "loss"
    callbacks: list[Any] = [
        keras.callbacks.EarlyStopping(
            monitor=monitor, patience=config.patience, restore_best_weights=True, verbose=0
        ),
        _EpochPrinter(echo, config.epochs, val_gray=gray[val_mask], val_labels=labels[val_mask]),
    ]
    if config.variant != "published":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor, factor=0.5, patience=max(2, config.patience // 2), min_lr=1e-5, verbose=0
            )
        )
    fit_started = time.monotonic()
    history = model.fit(
        train_ds, validation_data=val_ds, epochs=config.epochs, callbacks=callbacks, shuffle=False, verbose=0
    )  # the dataset shuffles itself, seeded
    fit_seconds = time.monotonic() - fit_started
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    monitored = hist.get(monitor, [])
    best_epoch = int(np.argmin(monitored)) + 1 if monitored else None
    epochs_run = len(hist.get("loss", []))
    echo(f"trained {epochs_run} epochs in {fit_seconds:.0f}s; kept the weights of epoch {best_epoch}")

    weights_path = out_dir / WEIGHTS_FILE
    model.save(weights_path)
    sha = file_sha256(weights_path)

    test_metrics = classification_metrics(labels[test_mask], predict_probabilities(model, gray[test_mask]))
    val_metrics = classification_metrics(labels[val_mask], predict_probabilities(model, gray[val_mask]))
    shortcut = size_shortcut_check(records, assignment, seed=config.seed)

    plot_training_curves(hist, out_dir / CURVES_PLOT, best_epoch=best_epoch)
    plot_confusion_matrix(
        test_metrics["confusion_matrix"], out_dir / CONFUSION_PLOT, title="Held-out test block"
    )

    params_without_dropout = build_model(config.variant, dropout=0).count_params()
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    comparisons = [comparison_entry(load_card(d)) for d in config.compare_with]
    import tensorflow as tf

    card: dict[str, Any] = {
        "name": f"lungcnn-{config.variant}-{created:%Y%m%d-%H%M}-{sha[:8]}",
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
            "parameters": int(model.count_params()),
            "parameters_without_dropout": int(params_without_dropout),
            "published_parameters_without_dropout": PUBLISHED_PARAMS_WITHOUT_DROPOUT,
        },
        "weights": {"file": WEIGHTS_FILE, "sha256": sha, "size_bytes": weights_path.stat().st_size},
        "dataset": {
            "name": "IQ-OTH/NCCD lung cancer dataset (development copy)",
            "citation": DATASET_CITATION,
            "doi": DATASET_DOI,
            "path": str(config.data_dir),
            "images_listed": len(all_records),
            "duplicates_dropped": duplicates_dropped,
            "images_used": len(records),
            "limit_per_class": config.limit,
        },
        "split": split,
        "counts": {
            split_name: {
                name: int(((assignment == i) & (labels == c)).sum()) for c, name in enumerate(CLASS_NAMES)
            }
            for i, split_name in enumerate(SPLITS)
        },
        "training": {
            "optimizer": "Adam",
            "learning_rate": config.learning_rate,
            "batch_size": config.batch_size,
            "max_epochs": config.epochs,
            "epochs_run": epochs_run,
            "best_epoch": best_epoch,
            "early_stopping": {"monitor": monitor, "patience": config.patience, "restore_best_weights": True},
            "reduce_lr_on_plateau": config.variant != "published",
            "class_weights": {CLASS_NAMES[c]: round(w, 4) for c, w in weights.items()},
            "seed": config.seed,
            "seconds": round(fit_seconds, 1),
            "history": hist,
        },
        "metrics": test_metrics,
        "validation_metrics": val_metrics,
        "shortcut_check": shortcut,
        "comparisons": comparisons,
        "plots": {"training_curves": CURVES_PLOT, "confusion_matrix": CONFUSION_PLOT},
        "command": config.command,
        "environment": {
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
        },
        "total_seconds": round(time.monotonic() - started, 1),
    }
    card["caveats"] = _caveats(card)
    write_card(out_dir, card)
    echo(
        f"test block: balanced accuracy {test_metrics['balanced_accuracy']}, accuracy "
        f"{test_metrics['accuracy']}; size-only shortcut: balanced accuracy {shortcut['balanced_accuracy']}"
    )
    echo(f"wrote {out_dir}/{WEIGHTS_FILE} (sha256 {sha}), {CARD_FILE}, {CARD_MARKDOWN_FILE}")
    return card


class _EpochPrinter:
    """Keras callback printing one line per epoch (duck-typed so keras is imported lazily)."""

    def __new__(cls, echo: Printer, total: int, *, val_gray: np.ndarray, val_labels: np.ndarray) -> Any:
        import keras

        class EpochPrinter(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self._started = time.monotonic()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                logs = logs if logs is not None else {}
                if len(val_labels):
                    # Balanced accuracy is what the card reports; watch it, although early
                    # stopping follows the (class-weighted) validation loss.
                    predicted = predict_probabilities(self.model, val_gray).argmax(axis=1)
                    recalls = [float((predicted[val_labels == c] == c).mean()) for c in np.unique(val_labels)]
                    logs["val_balanced_accuracy"] = float(np.mean(recalls))
                parts = [f"epoch {epoch + 1:>3}/{total}"]
                for key in ("loss", "accuracy", "val_loss", "val_accuracy", "val_balanced_accuracy"):
                    if key in logs:
                        parts.append(f"{key} {float(logs[key]):.4f}")
                lr = getattr(self.model.optimizer, "learning_rate", None)
                if lr is not None:
                    parts.append(f"lr {float(np.asarray(lr)):.1e}")
                parts.append(f"{time.monotonic() - self._started:.0f}s")
                echo("  ".join(parts))
                sys.stdout.flush()

        return EpochPrinter()


def comparison_entry(other: dict[str, Any]) -> dict[str, Any]:
    """What the card shows of another run (same data, same split) for comparison."""
    metrics = other.get("metrics", {})
    training = other.get("training", {})
    return {
        "name": other.get("name"),
        "variant": other.get("architecture", {}).get("variant"),
        "balanced_accuracy": metrics.get("balanced_accuracy"),
        "accuracy": metrics.get("accuracy"),
        "recall": {n: metrics.get("per_class", {}).get(n, {}).get("recall") for n in CLASS_NAMES},
        "roc_auc_ovr_macro": metrics.get("roc_auc_ovr_macro"),
        "validation_balanced_accuracy": (other.get("validation_metrics") or {}).get("balanced_accuracy"),
        "validation_loss": (
            round(min(training["history"]["val_loss"]), 4)
            if training.get("history", {}).get("val_loss")
            else None
        ),
        "epochs_run": training.get("epochs_run"),
        "best_epoch": training.get("best_epoch"),
        "command": other.get("command"),
        "split": {
            label: {s: desc[s]["sequence_range"] for s in SPLITS}
            for label, desc in other.get("split", {}).get("classes", {}).items()
        },
    }


def add_notes(model_dir: Path, notes: Sequence[str]) -> dict[str, Any]:
    """Add a reviewer's notes (what the numbers mean) to a card and re-render MODEL_CARD.md."""
    card = load_card(model_dir)
    card["notes"] = list(notes)
    write_card(model_dir, card)
    return card


def add_comparisons(model_dir: Path, others: Sequence[Path]) -> dict[str, Any]:
    """Add other runs' results to a model directory's card (only runs on the same split) and
    re-render MODEL_CARD.md."""
    card = load_card(model_dir)
    mine = comparison_entry(card)["split"]
    entries = list(card.get("comparisons") or [])
    for other in others:
        entry = comparison_entry(load_card(other))
        if entry["split"] != mine:
            raise ValueError(f"{other} was evaluated on another split; its numbers are not comparable")
        entries = [e for e in entries if e["name"] != entry["name"]] + [entry]
    card["comparisons"] = entries
    write_card(model_dir, card)
    return card


def _caveats(card: dict[str, Any]) -> list[str]:
    metrics = card["metrics"]
    counts = card["counts"]["test"]
    caveats = [
        "Single-slice classifier: it sees one 2D slice, not a study; many slices of a patient with "
        "a nodule do not show the nodule, and benign versus normal on one slice is hard.",
        f"The test block is small ({sum(counts.values())} slices: "
        + ", ".join(f"{v} {k}" for k, v in counts.items())
        + ") and comes from only a few patients per class, so every figure here has a wide "
        "uncertainty; the benign figures rest on one or two patients.",
        "Patients are not identified in the dataset: the split assumes consecutive numbers belong "
        "to one patient and cuts at the least-similar neighbouring pair; a patient may still "
        "straddle a cut.",
        "One hospital, one scanner protocol, 8-bit JPEG exports, fall 2019: performance on other "
        "sites, scanners or DICOM windowing is unknown.",
        "Research use only; not a medical device. A clinician reviews every prediction.",
    ]
    shortcut = card["shortcut_check"].get("balanced_accuracy")
    if shortcut is not None and metrics.get("balanced_accuracy") is not None:
        if metrics["balanced_accuracy"] <= shortcut + 0.05:
            caveats.insert(
                0,
                "The CNN is not clearly better than a classifier that sees only the "
                "image size: it may have learned the shortcut.",
            )
    if card["dataset"].get("limit_per_class"):
        caveats.insert(
            0,
            f"Tiny run (--limit {card['dataset']['limit_per_class']} per class): a "
            "placeholder to exercise the pipeline, not a usable classifier.",
        )
    return caveats


# --------------------------------------------------------------------------------------------
# Cards
# --------------------------------------------------------------------------------------------


def load_card(model_dir: Path | str) -> dict[str, Any]:
    path = Path(model_dir) / CARD_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no {CARD_FILE} in {model_dir}") from None


def write_card(out_dir: Path, card: dict[str, Any]) -> None:
    (Path(out_dir) / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    (Path(out_dir) / CARD_MARKDOWN_FILE).write_text(render_card_markdown(card))


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def render_card_markdown(card: dict[str, Any]) -> str:
    m = card["metrics"]
    arch = card["architecture"]
    training = card["training"]
    shortcut = card["shortcut_check"]
    lines = [
        f"# Model card: {card['name']}",
        "",
        "A CNN that classifies one lung CT slice as "
        + ", ".join(f"**{n}**" for n in card["class_names"])
        + ". Research use only: it supports, never replaces, a clinician's reading.",
        "",
        "## Headline",
        "",
        f"On the held-out, patient-disjoint **test block** ({m['n']} slices): "
        f"**balanced accuracy {_fmt(m['balanced_accuracy'])}**, accuracy {_fmt(m['accuracy'])}, "
        f"macro one-vs-rest ROC AUC {_fmt(m['roc_auc_ovr_macro'])}.",
        "",
        f"A classifier that sees only the image's width and height reaches balanced accuracy "
        f"**{_fmt(shortcut.get('balanced_accuracy'))}** on the same split (shortcut check).",
        "",
        "| class | precision | recall | F1 | ROC AUC (one vs rest) | test slices |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in card["class_names"]:
        pc = m["per_class"][name]
        lines.append(
            f"| {name} | {_fmt(pc['precision'])} | {_fmt(pc['recall'])} | {_fmt(pc['f1'])} "
            f"| {_fmt(pc['roc_auc'])} | {pc['support']} |"
        )
    lines += [
        "",
        "Confusion matrix on the test block (rows: true, columns: predicted):",
        "",
        "| true \\ predicted | " + " | ".join(card["class_names"]) + " |",
        "| --- |" + " --- |" * len(card["class_names"]),
    ]
    for name, row in zip(card["class_names"], m["confusion_matrix"], strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    vm = card.get("validation_metrics") or {}
    lines += [
        "",
        f"Validation block (used for early stopping, so optimistic): balanced accuracy "
        f"{_fmt(vm.get('balanced_accuracy'))}, accuracy {_fmt(vm.get('accuracy'))}.",
        "",
        f"![training curves]({card['plots']['training_curves']})",
        f"![confusion matrix]({card['plots']['confusion_matrix']})",
        "",
    ]
    if card.get("notes"):
        lines += ["## What this means", ""] + [f"- {note}" for note in card["notes"]] + [""]
    comparisons = card.get("comparisons") or []
    if comparisons:
        this = comparison_entry(card)
        lines += [
            "## Compared with other runs on the same split",
            "",
            "Runs are compared on the validation block by class-weighted validation loss, the "
            "criterion early stopping uses; test-block figures are shown for information and were "
            "not used to train or stop any run.",
            "",
            "| model | variant | validation loss | validation balanced acc. | test balanced acc. | "
            "test accuracy | recall normal | recall benign | recall malignant | epochs (kept) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for label, entry in [("**this model**", this)] + [(e["name"], e) for e in comparisons]:
            lines.append(
                f"| {label} | {entry['variant']} | {_fmt(entry.get('validation_loss'))} | "
                f"{_fmt(entry.get('validation_balanced_accuracy'))} | "
                f"{_fmt(entry['balanced_accuracy'])} | {_fmt(entry['accuracy'])} | "
                + " | ".join(_fmt(entry["recall"].get(n)) for n in card["class_names"])
                + f" | {entry.get('epochs_run')} ({entry.get('best_epoch')}) |"
            )
        lines += ["", "Commands:", ""]
        lines += [f"- `{entry['name']}`: `{entry.get('command')}`" for entry in comparisons]
        lines.append("")
    split = card["split"]
    lines += [
        "## Data and split",
        "",
        f"Dataset: {card['dataset']['citation']}.",
        "",
        f"{card['dataset']['images_listed']} images in the development copy; "
        f"{card['dataset']['duplicates_dropped']} byte-identical duplicates counted once; "
        f"{card['dataset']['images_used']} used.",
        "",
        f"Split: {split['method']}.",
        "",
        "| class | train | validation | test |",
        "| --- | --- | --- | --- |",
    ]
    for name, desc in split["classes"].items():
        cells = []
        for s in SPLITS:
            rng = desc[s]["sequence_range"]
            cells.append(f"{desc[s]['count']} (seq {rng[0]}–{rng[1]})" if rng else "0")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    leak = split.get("leakage_check")
    if leak:
        lines += [
            "",
            "Leakage check: each test slice's correlation with its most similar training slice "
            f"(64×64 thumbnails): median {leak['test_to_nearest_train_correlation_median']}, "
            f"max {leak['test_to_nearest_train_correlation_max']}; "
            f"{leak['test_slices_with_nearest_train_correlation_over_0.95']} test slices above 0.95.",
        ]
    lines += [
        "",
        "## Model and training",
        "",
        f"- Variant `{arch['variant']}`: six 3×3 convolutions ({', '.join(map(str, arch['conv_filters']))} "
        f"filters, 'valid' padding) each followed by 2×2 max-pooling, flatten, dense {arch['dense_units']}, "
        f"dropout {arch['dropout']}, softmax over 3 classes; ReLU. {arch['parameters']:,} parameters "
        f"(the published design: {arch['published_parameters_without_dropout']:,}). "
        + arch.get("description", ""),
        f"- Preprocessing (training and serving alike): {card['preprocessing']}.",
        f"- Adam (learning rate {training['learning_rate']}), batch {training['batch_size']}, "
        "class-weighted cross-entropy ("
        + ", ".join(f"{k} {v}" for k, v in training["class_weights"].items())
        + "), "
        f"early stopping on {training['early_stopping']['monitor']} (patience "
        f"{training['early_stopping']['patience']}, best weights restored)"
        + (", learning rate halved on plateau" if training.get("reduce_lr_on_plateau") else "")
        + f", seed {training['seed']}.",
        f"- Ran {training['epochs_run']} of at most {training['max_epochs']} epochs; kept epoch "
        f"{training['best_epoch']}; {training['seconds']:.0f} s of training on "
        f"{card['environment']['cpu_count']} CPU cores (TensorFlow {card['environment']['tensorflow']}).",
        "",
        "## Weights",
        "",
        f"`{card['weights']['file']}`, {card['weights']['size_bytes']:,} bytes, SHA-256 "
        f"`{card['weights']['sha256']}`.",
        "",
        "## Reproduce",
        "",
        "```",
        card["command"] or "(command not recorded)",
        "```",
        "",
        "Seeds are fixed and TensorFlow's op determinism is on; figures may still differ in the last "
        "digits on another CPU or TensorFlow build.",
        "",
        "## Caveats",
        "",
    ]
    lines += [f"- {c}" for c in card["caveats"]]
    lines.append("")
    return "\n".join(lines)
