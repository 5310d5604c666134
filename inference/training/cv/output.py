"""A run's outputs and their conversion: `save_cv` writes `cv_result.npz`, `weights.npz` and
`cv_log.txt`; `convert_to_keras` turns the fold weights into `fold{k}.keras` models and
`check_conversion` compares those models' predictions with the run's OOF probabilities."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...preprocessing import CLASS_NAMES, gray_to_input
from ..data import Printer
from .device_data import load_device_data
from .result import CVResult

RESULT_FILE = "cv_result.npz"
FOLD_WEIGHTS_FILE = "weights.npz"
LOG_FILE = "cv_log.txt"
MAX_OUTPUT_FILES = 8

# numpy's stubs read `**arrays` as possibly holding `allow_pickle`; this takes named arrays only.
_savez: Callable[..., None] = np.savez


def save_cv(
    result: CVResult,
    out_dir: Path,
    *,
    paths: Sequence[str] | np.ndarray | None = None,
    sequences: Sequence[int] | np.ndarray | None = None,
    log_lines: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
) -> list[Path]:
    """Write `cv_result.npz`, `weights.npz` (every completed fold's weights at E*, in the base
    model's `get_weights()` order, keys `fold{k}_{i:03d}`: load them into `build_model(...)` with
    set_weights under any backend) and `cv_log.txt` into `out_dir`. Returns the files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {**result.settings, **(extra or {})}
    np.savez_compressed(
        out_dir / RESULT_FILE,
        image_size=np.array(result.image_size),
        variant=np.array(result.variant),
        epochs=np.array(result.epochs),
        epochs_requested=np.array(result.epochs_requested),
        chosen_epoch=np.array(result.chosen_epoch),
        fold_ids=result.fold_ids,
        completed_folds=result.completed_folds,
        fold_of=result.fold_of,
        labels=result.labels,
        class_names=np.array(CLASS_NAMES, dtype=str),
        paths=np.array(list(paths) if paths is not None else [], dtype=str),
        sequences=np.array(list(sequences) if sequences is not None else [], dtype=np.int64),
        val_loss=result.val_loss,
        mean_val_loss=result.mean_val_loss,
        val_balanced_accuracy=result.val_balanced_accuracy,
        train_loss=result.train_loss,
        epoch_seconds=result.epoch_seconds,
        oof_probs=result.oof_probs,
        oof_probs_by_epoch=result.oof_probs_by_epoch,
        oof_features=result.oof_features,
        stop_reason=np.array(result.stop_reason),
        seconds=np.array(result.seconds),
        settings=np.array(json.dumps(settings, default=str)),
    )
    weights: dict[str, np.ndarray] = {
        f"fold{fold}_{i:03d}": np.asarray(w)
        for fold, ws in result.fold_weights.items()
        for i, w in enumerate(ws)
    }
    _savez(
        out_dir / FOLD_WEIGHTS_FILE,
        folds=np.array(sorted(result.fold_weights), dtype=np.int64),
        n_weights=np.array(len(next(iter(result.fold_weights.values()), []))),
        variant=np.array(result.variant),
        image_size=np.array(result.image_size),
        dropout=np.array(float(result.settings.get("dropout", 0.5))),
        seed=np.array(int(result.settings.get("seed", 1234))),
        chosen_epoch=np.array(result.chosen_epoch),
        **weights,
    )
    (out_dir / LOG_FILE).write_text("\n".join(log_lines) + "\n")
    files = sorted(p for p in out_dir.rglob("*") if p.is_file())
    if len(files) > MAX_OUTPUT_FILES:
        raise RuntimeError(f"{out_dir} holds {len(files)} files; at most {MAX_OUTPUT_FILES} come back")
    return [out_dir / RESULT_FILE, out_dir / FOLD_WEIGHTS_FILE, out_dir / LOG_FILE]


def load_fold_weights(out_dir: Path) -> tuple[dict[str, Any], dict[int, list[np.ndarray]]]:
    """(settings to rebuild the model, {fold: weights}) from `weights.npz`."""
    with np.load(Path(out_dir) / FOLD_WEIGHTS_FILE) as data:
        meta = {
            "variant": str(data["variant"]),
            "image_size": int(data["image_size"]),
            "dropout": float(data["dropout"]),
            "seed": int(data["seed"]),
            "chosen_epoch": int(data["chosen_epoch"]),
        }
        n_weights = int(data["n_weights"])
        weights = {int(f): [data[f"fold{int(f)}_{i:03d}"] for i in range(n_weights)] for f in data["folds"]}
    return meta, weights


def build_fold_model(meta: dict[str, Any], weights: list[np.ndarray]) -> Any:
    """The network as `build_model` makes it, with one fold's weights (any backend)."""
    from ...network import build_model

    model = build_model(
        meta["variant"], dropout=meta["dropout"], seed=meta["seed"], input_size=meta["image_size"]
    )
    model.set_weights(weights)
    return model


def convert_to_keras(out_dir: Path, dest: Path | None = None, *, echo: Printer = print) -> list[Path]:
    """Save every fold of a run's output folder as `fold{k}.keras` (in `dest`, by default the
    folder itself) with the current Keras backend (TensorFlow here)."""
    import keras

    out_dir = Path(out_dir)
    dest = Path(dest) if dest is not None else out_dir
    dest.mkdir(parents=True, exist_ok=True)
    meta, weights = load_fold_weights(out_dir)
    written = []
    for fold, fold_weights in sorted(weights.items()):
        path = dest / f"fold{fold}.keras"
        build_fold_model(meta, fold_weights).save(path)
        written.append(path)
    echo(f"saved {len(written)} fold models ({keras.backend.backend()} backend) to {dest}")
    return written


def _data_index(paths: np.ndarray, data_paths: np.ndarray, n: int, where: str) -> np.ndarray:
    """Where each of a run's slices (by path; a dry run may use a subset) is in a data file."""
    if not len(paths):
        if n != len(data_paths):
            raise ValueError(f"{where} holds {len(data_paths)} slices, the run {n}")
        return np.arange(n)
    position = {str(p): i for i, p in enumerate(data_paths)}
    missing = [str(p) for p in paths if str(p) not in position]
    if missing:
        raise ValueError(f"{where} lacks {len(missing)} of the run's slices, e.g. {missing[0]}")
    return np.array([position[str(p)] for p in paths], dtype=np.int64)


def check_conversion(
    out_dir: Path,
    data_path: Path,
    *,
    models_dir: Path | None = None,
    per_fold: int = 4,
    echo: Printer = print,
) -> float:
    """Load each `fold{k}.keras`, predict `per_fold` of its held-out slices from `data_path`, and
    return the largest absolute difference from the run's OOF probabilities (at E*)."""
    import keras

    out_dir = Path(out_dir)
    models_dir = Path(models_dir) if models_dir is not None else out_dir
    data = load_device_data(Path(data_path), echo=echo)
    with np.load(out_dir / RESULT_FILE) as result:
        oof, fold_of, paths = result["oof_probs"], result["fold_of"], result["paths"]
        completed = [int(f) for f in result["completed_folds"]]
    gray = data.gray[_data_index(paths, data.paths, len(fold_of), str(data_path))]
    worst = 0.0
    for fold in completed:
        held = np.flatnonzero(fold_of == fold)
        pick = held[np.linspace(0, len(held) - 1, min(per_fold, len(held))).astype(int)]
        model = keras.saving.load_model(models_dir / f"fold{fold}.keras")
        probs = np.asarray(model(gray_to_input(gray[pick]), training=False))
        diff = float(np.abs(probs - oof[pick]).max())
        echo(f"fold {fold}: {len(pick)} slices, largest |difference| {diff:.2e}")
        worst = max(worst, diff)
    return worst
