"""Fitting and measuring the not-assessable check (`inference.assessability`): limits learnt from
the training slices, the false-flag rate on held-out folds of real CT slices, and the catch rate
on generated images that are not CT slices (photos, documents, blank, noise, a radiograph)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..assessability import Limits, slice_features
from ..preprocessing import inspect
from .data import Record


def dataset_features(data_dir: Path, records: Sequence[Record]) -> list[dict[str, float]]:
    """The assessability features of each record's slice, as the worker computes them."""
    features = []
    for record in records:
        found = inspect((Path(data_dir) / record.path).read_bytes())
        features.append(slice_features(found.image, colour=found.colour))
    return features


def non_ct_images(seed: int = 0, size: int = 512) -> dict[str, Image.Image]:
    """Images a clinician might upload by mistake, none of them a CT slice."""
    rng = np.random.default_rng(seed)
    images: dict[str, Image.Image] = {
        "white page": Image.new("L", (size, size), 255),
        "black frame": Image.new("L", (size, size), 0),
        "grey frame": Image.new("L", (size, size), 128),
        "uniform noise": Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)),
        "dark noise": Image.fromarray(np.clip(rng.normal(20, 20, (size, size)), 0, 255).astype(np.uint8)),
        "gradient": Image.fromarray(np.tile(np.linspace(0, 255, size).astype(np.uint8), (size, 1))),
        "grey photo": Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).resize(
            (size, size), Image.Resampling.BICUBIC
        ),
    }
    photo = Image.new("RGB", (size, size), (120, 160, 200))
    draw = ImageDraw.Draw(photo)
    for _ in range(12):
        x, y = (int(v) for v in rng.integers(0, size, 2))
        w, h = (int(v) for v in rng.integers(20, 200, 2))
        draw.ellipse([x, y, x + w, y + h], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    images["colour photo"] = photo
    document = Image.new("L", (size, size), 250)
    draw = ImageDraw.Draw(document)
    for row in range(30, size - 30, 18):
        draw.text((30, row), "Discharge letter: patient seen in clinic, follow-up in 3 months", fill=0)
    images["document"] = document
    screenshot = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(screenshot)
    for row in range(10, size, 40):
        draw.text((10, row), "WORKSTATION SCREENSHOT  W:1500 L:-600", fill=255)
    images["text on black"] = screenshot
    radiograph = Image.new("L", (size, size), 10)
    draw = ImageDraw.Draw(radiograph)
    draw.ellipse([40, 30, size - 40, size - 10], fill=150)
    draw.ellipse([100, 80, 240, 420], fill=70)
    draw.ellipse([272, 80, 412, 420], fill=70)
    images["chest radiograph"] = radiograph.filter(ImageFilter.GaussianBlur(8))
    return images


def fit_assessability(
    features: Sequence[dict[str, float]], folds: np.ndarray
) -> tuple[Limits, dict[str, Any]]:
    """Limits from all slices, with the false-flag rate measured fold by fold (limits fitted on
    the other folds) and the catch rate on `non_ct_images`."""
    flagged = 0
    per_fold = []
    for fold in np.unique(folds):
        train = [f for f, k in zip(features, folds, strict=True) if k != fold]
        held_out = [f for f, k in zip(features, folds, strict=True) if k == fold]
        limits = Limits.fit(train)
        flags = sum(limits.reason(f) is not None for f in held_out)
        flagged += flags
        per_fold.append(flags / len(held_out) if held_out else 0.0)
    limits = Limits.fit(features)
    caught = {}
    for name, image in non_ct_images().items():
        found = inspect(_png(image))
        caught[name] = limits.reason(slice_features(found.image, colour=found.colour))
    figures = {
        "method": "image statistics within the range of the training slices (widened by half its spread)",
        "false_flag_rate": flagged / len(features) if len(features) else 0.0,
        "false_flag_rate_per_fold": per_fold,
        "catch_rate": sum(reason is not None for reason in caught.values()) / len(caught),
        "non_ct_images": caught,
    }
    return limits, figures


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
