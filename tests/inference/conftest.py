from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from inference.preprocessing import CLASS_NAMES

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_WEIGHTS = ROOT / "inference" / "weights"


def tiny_dataset(folder: Path) -> None:
    """Class folders of PNG slices: per class 4 'patients' of 3 slices, most 64x64, some 80x64
    (padded to square, so not derivable from a smaller file)."""
    rng = np.random.default_rng(3)
    for c, label in enumerate(CLASS_NAMES):
        (folder / label).mkdir(parents=True)
        for patient in range(4):
            base = rng.integers(0, 80, (64, 64)).astype(np.float64) + 60 * c
            base[16 + 8 * c : 32 + 8 * c, 16:48] += 100  # a class-dependent bright block
            for s in range(3):
                number = patient * 3 + s + 1
                pixels = np.clip(base + rng.normal(0, 5, base.shape), 0, 255).astype(np.uint8)
                if number == 2:
                    pixels = np.concatenate([pixels, np.zeros((64, 16), np.uint8)], axis=1)
                Image.fromarray(pixels).save(folder / label / f"case ({number}).png")
