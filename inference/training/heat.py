"""Where the network looks: the share of Grad-CAM mass inside the lung fields on the dataset's
malignant slices, before any masking (the served heatmaps are masked, so what a reader sees is
inside by construction; this raw share is the measure of the model).

Each slice is explained by the member that never saw its patient (its fold's model, as in the
card's out-of-fold figures); `served=True` explains every slice by the first member instead, as
the worker does (which saw four slices in five in training).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..lung_fields import lung_fields_gray
from ..preprocessing import gray_to_input, preprocess_gray

TARGET = 0.8


def inside_share(heat: np.ndarray, mask: np.ndarray) -> float | None:
    """The share of `heat`'s mass where `mask` is set (None for a heat of zero everywhere)."""
    total = float(np.clip(heat, 0, None).sum())
    return float(np.clip(heat, 0, None)[mask].sum()) / total if total > 0 else None


def heat_in_lungs(
    weights_dir: Path,
    data_dir: Path,
    *,
    limit: int | None = None,
    served: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The share of Grad-CAM mass inside the lung fields, per malignant slice, summarised."""
    import tensorflow as tf

    from ..predictor import Predictor, _gradcam_function
    from .ensemble import CV_PREDICTIONS

    predictor = Predictor(weights_dir, runtime="keras")
    cv = np.load(Path(weights_dir) / CV_PREDICTIONS, allow_pickle=False)
    size = predictor.image_size
    spec = tf.TensorSpec([None, size, size, 3], tf.float32)
    folds = [int(m.get("fold", i + 1)) - 1 for i, m in enumerate(predictor.card.get("members", []))]
    explainers = {
        fold: _gradcam_function(member, spec, size)[0]
        for fold, member in zip(folds, predictor.members, strict=True)
    }
    malignant = int(list(cv["class_names"]).index("malignant"))
    rows = np.flatnonzero(cv["labels"] == malignant)
    if limit:
        rows = rows[:: max(1, len(rows) // limit)][:limit]
    shares, plausible_shares, implausible = [], [], 0
    for count, row in enumerate(rows, start=1):
        gray = preprocess_gray(Image.open(Path(data_dir) / str(cv["paths"][row])), size=size)
        fold = folds[0] if served else int(cv["fold_of"][row])
        heat = explainers[fold](gray_to_input(gray)[np.newaxis]).numpy()
        fields = lung_fields_gray(gray)
        share = inside_share(heat, fields.mask)
        if share is None:
            continue
        shares.append(share)
        if fields.plausible:
            plausible_shares.append(share)
        else:
            implausible += 1
        if count % 50 == 0:
            echo(f"{count}/{len(rows)}: mean so far {np.mean(shares):.3f}")
    return {
        "slices": len(shares),
        "explainer": (
            "the first member (as served)"
            if served
            else "the member that never saw its patient (out-of-fold)"
        ),
        "mean": _round(np.mean(shares)) if shares else None,
        "median": _round(np.median(shares)) if shares else None,
        "share_at_target": _round(np.mean(np.array(shares) >= TARGET)) if shares else None,
        "target": TARGET,
        "implausible_masks": implausible,
        "mean_plausible_masks": _round(np.mean(plausible_shares)) if plausible_shares else None,
    }


def _round(value: Any) -> float:
    return round(float(value), 4)
