"""Patient-grouped k-fold cross-validation: the folds, the device data files, the training loop,
its outputs, and turning them into `.keras` models.

This package owns cross-validation from the dataset to the fold models: the patient-grouped
folds, the `data_{size}.npz` files a device run trains on, the training loop and the choice of
E*, the files a run writes, and their conversion to `.keras`. The ensemble built from the fold
models and its card are owned by `inference.training.ensemble` and `inference.training.cv_card`;
the device entry point by `inference.training.device_cv`.

Backend-agnostic Keras: the same code trains with TensorFlow on the CPU (tests, dry runs) and
with JAX on the device GPU (`inference.training.device_cv`). No Django; numpy and Pillow at import
time, Keras only when a function here trains, converts or predicts.

Modules:
    folds        grouped_folds, fold_summary (contiguous `sequence` blocks; thumbnails from `split`)
    device_data  DeviceData, prepare_device_data, load_device_data (derived slices, CRC-32)
    scores       class weights, the class-weighted log loss, balanced accuracy
    trainer      the one compiled model every fold reuses (`_Trainer`), PredictContext
    budget       the wall-clock budget: epochs per fold, deadlines (`_Budget`)
    result       CVResult and its assembly from the folds' outcomes (E*)
    train        run_cv
    output       save_cv, load_fold_weights, build_fold_model, convert_to_keras, check_conversion
    cli          the `prep` and `convert` commands

Command line (local, TensorFlow):
    python -m inference.training.cv prep --sizes 384 512        # var/device/data_{size}.npz
    python -m inference.training.cv convert var/device/out/s384  # fold{k}.keras + equality check
"""

from .budget import _Budget as _Budget
from .device_data import (
    DEFAULT_DATA_DIR,
    DEFAULT_DEVICE_DIR,
    DeviceData,
    load_device_data,
    prepare_device_data,
)
from .folds import (
    DEFAULT_K,
    DEFAULT_MAX_SHIFT,
    DEFAULT_SNAP_WINDOW,
    fold_summary,
    grouped_folds,
    thumbnail_vectors,
)
from .output import (
    FOLD_WEIGHTS_FILE,
    LOG_FILE,
    MAX_OUTPUT_FILES,
    RESULT_FILE,
    build_fold_model,
    check_conversion,
    convert_to_keras,
    load_fold_weights,
    save_cv,
)
from .result import CVResult
from .scores import LOG_EPSILON, balanced_accuracy, class_weight_array, weighted_log_loss
from .train import run_cv
from .trainer import FEATURE_LAYER, PredictContext
from .trainer import _Trainer as _Trainer

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_DEVICE_DIR",
    "DEFAULT_K",
    "DEFAULT_MAX_SHIFT",
    "DEFAULT_SNAP_WINDOW",
    "FEATURE_LAYER",
    "LOG_EPSILON",
    "LOG_FILE",
    "MAX_OUTPUT_FILES",
    "RESULT_FILE",
    "FOLD_WEIGHTS_FILE",
    "CVResult",
    "DeviceData",
    "PredictContext",
    "balanced_accuracy",
    "build_fold_model",
    "check_conversion",
    "class_weight_array",
    "convert_to_keras",
    "fold_summary",
    "grouped_folds",
    "load_device_data",
    "load_fold_weights",
    "prepare_device_data",
    "run_cv",
    "save_cv",
    "thumbnail_vectors",
    "weighted_log_loss",
]
