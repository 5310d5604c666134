"""Split, train, evaluate, and write a model directory with its card.

This package owns the training side of a model: reading the labelled dataset, the
patient-disjoint split, fitting, the metrics the card reports, the plots, and the card itself
(card.json and MODEL_CARD.md). What a model directory holds, and how its weights are identified,
is owned by `inference.artifacts`.

The split is patient-disjoint: slices of one patient are numbered consecutively in this dataset,
so each class is cut into contiguous blocks of `sequence` (train, then validation, then test),
never image by image. Byte-identical duplicates are counted once.

Modules:
    data      the dataset's records (manifest.csv or class folders), duplicates, limits, pixels
    split     the patient-disjoint block split and its leakage check
    metrics   classification metrics, balanced class weights, the size-only shortcut check
    fit       TrainConfig, seeds, the tf.data pipeline, the Keras fit, predictions
    plots     training curves and the confusion matrix (PNG)
    card      load, write and render the card; notes, comparisons, caveats
    pipeline  `train`: one run from a labelled folder to a model directory

Importing this package does not import TensorFlow, Keras, scikit-learn or matplotlib.
"""

from .card import add_comparisons, add_notes
from .data import Record, limit_records, load_images, read_manifest, unique_records
from .fit import TrainConfig
from .metrics import class_weights_for, classification_metrics, size_shortcut_check
from .pipeline import train
from .split import SPLITS, patient_block_split

__all__ = [
    "SPLITS",
    "Record",
    "TrainConfig",
    "add_comparisons",
    "add_notes",
    "class_weights_for",
    "classification_metrics",
    "limit_records",
    "load_images",
    "patient_block_split",
    "read_manifest",
    "size_shortcut_check",
    "train",
    "unique_records",
]
