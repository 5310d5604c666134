"""Is an image a CT slice of the kind the model knows? Image statistics with limits learnt from
the training slices (stored in the model card); anything outside them is *not assessable*, with
the reason, and never gets a label. numpy and Pillow only (the web process imports this).

Chosen by measurement (see the card): these statistics keep the false-flag rate on
cross-validation CT slices at or below the stated target while catching photos, documents, blank
and noise images; they cannot tell an axial chest slice from a slice of another body region.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

_SIZE = 128
_BORDER = 0.08

# feature -> why an image outside the CT range is refused (said to a clinician)
REASONS: dict[str, str] = {
    "colour": "the image is in colour; CT slices are grayscale",
    "dark_border": "no dark background around the body, as an axial CT slice has",
    "dark_fraction": "too little air (black) for a lung CT slice",
    "bright_fraction": "too much of the image is bright for a lung CT slice",
    "mean": "the overall brightness is unlike a lung CT slice",
    "std": "the image has too little or too much contrast for a CT slice (blank or saturated)",
    "roughness": "the image is dominated by fine noise, unlike a CT slice",
}
FEATURES: tuple[str, ...] = tuple(REASONS)
# JPEG chroma noise on a grayscale export stays far below this; a photo is far above it.
_COLOUR_ALLOWED = 0.06


def slice_features(gray: Image.Image, *, colour: float = 0.0) -> dict[str, float]:
    """Statistics of the 8-bit grayscale image as decoded (not padded), at 128 px; `colour` is
    `Inspection.colour`, measured on the file before it was made grayscale."""
    small = gray.convert("L").resize((_SIZE, _SIZE), Image.Resampling.BILINEAR)
    pixels = np.asarray(small, dtype=np.float32) / 255.0
    band = max(1, int(_SIZE * _BORDER))
    ring = np.concatenate(
        [pixels[:band].ravel(), pixels[-band:].ravel(), pixels[:, :band].ravel(), pixels[:, -band:].ravel()]
    )
    std = float(pixels.std())
    steps = np.abs(np.diff(pixels, axis=1)).mean() + np.abs(np.diff(pixels, axis=0)).mean()
    return {
        "colour": float(colour),
        "dark_border": float((ring < 0.16).mean()),
        "dark_fraction": float((pixels < 0.12).mean()),
        "bright_fraction": float((pixels > 0.8).mean()),
        "mean": float(pixels.mean()),
        "std": std,
        "roughness": float(steps / (2 * std)) if std > 1e-6 else 0.0,
    }


@dataclass(frozen=True)
class Limits:
    """Per feature, the [low, high] range that CT slices fall in."""

    ranges: dict[str, tuple[float, float]]

    @classmethod
    def fit(
        cls, features: Sequence[Mapping[str, float]], *, quantile: float = 0.0, margin: float = 0.5
    ) -> Limits:
        """The range of each feature over CT slices (between the `quantile` and 1 - `quantile`
        quantiles), widened by `margin` of its spread on each side."""
        ranges: dict[str, tuple[float, float]] = {}
        for name in FEATURES:
            values = np.array([f[name] for f in features], dtype=np.float64)
            low, high = np.quantile(values, [quantile, 1 - quantile])
            spread = max(high - low, 1e-3)
            ranges[name] = (float(low - margin * spread), float(high + margin * spread))
        low, high = ranges["colour"]
        ranges["colour"] = (low, max(high, _COLOUR_ALLOWED))
        return cls(ranges=ranges)

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[float]]) -> Limits:
        return cls(ranges={name: (float(v[0]), float(v[1])) for name, v in data.items()})

    def as_dict(self) -> dict[str, list[float]]:
        return {name: [low, high] for name, (low, high) in self.ranges.items()}

    def reason(self, features: Mapping[str, float]) -> str | None:
        """Why the image is not assessable, or None when it looks like a CT slice."""
        for name, (low, high) in self.ranges.items():
            value = features.get(name)
            if value is not None and not low <= value <= high:
                return REASONS.get(name, f"{name} out of range")
        return None
