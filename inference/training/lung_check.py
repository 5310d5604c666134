"""The lung fields checked on the dataset's slices: how many masks look wrong by the simple rules
of `inference.lung_fields.check`, and contact sheets to look at them.

Two sheets: one with the slices under the outlines (for a local look: the dataset's rules keep its
images out of the repository), and one with the outlines alone on black (no pixel of the dataset;
small enough to sit beside the model card).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..lung_fields import lung_fields_gray
from ..preprocessing import preprocess_gray
from .data import read_manifest, unique_records

OUTLINES_PLOT = "lung_fields.png"
TILE = 96
COLUMNS = 10


@dataclass
class LungCheck:
    slices: int = 0
    flagged: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    by_rule: Counter[str] = field(default_factory=Counter)
    area: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {
            "slices": self.slices,
            "flagged": len(self.flagged),
            "by_rule": dict(sorted(self.by_rule.items())),
            "area_median": round(float(np.median(self.area)), 4) if self.area else None,
        }


def _rule(problem: str) -> str:
    for prefix, rule in (("area", "area outside range"), ("along", "along the body outline")):
        if problem.startswith(prefix):
            return rule
    return problem


def check_dataset(
    data_dir: Path,
    *,
    size: int,
    limit: int | None = None,
    sheet: Path | None = None,
    outlines: Path | None = None,
    echo: Callable[[str], None] = print,
) -> LungCheck:
    """Lung fields of every distinct slice (or the first `limit`, evenly spread), at the model's
    input (`preprocess_gray(size)`), counted by the sanity rules; contact sheets of an even sample
    of them, the flagged first, written where asked."""
    records = unique_records(read_manifest(data_dir))
    if limit:
        records = records[:: max(1, len(records) // limit)][:limit]
    result = LungCheck()
    tiles: list[tuple[bool, np.ndarray, np.ndarray]] = []
    every = max(1, len(records) // (COLUMNS * 5))
    for index, record in enumerate(records):
        gray = preprocess_gray(Image.open(data_dir / record.path), size=size)
        fields = lung_fields_gray(gray)
        result.slices += 1
        result.area.append(float(fields.mask.mean()))
        if fields.problems:
            result.flagged.append((record.path, fields.problems))
            result.by_rule.update(_rule(p) for p in fields.problems)
            echo(f"{record.path}: {', '.join(fields.problems)}")
        if fields.problems or index % every == 0:
            tiles.append((bool(fields.problems), gray, fields.mask))
    # The flagged first, then the even sample; at most five rows.
    tiles.sort(key=lambda t: not t[0])
    tiles = tiles[: COLUMNS * 5]
    if sheet is not None:
        _write_sheet(sheet, [(flag, _tile(gray, mask, show_slice=True)) for flag, gray, mask in tiles])
    if outlines is not None:
        _write_sheet(outlines, [(flag, _tile(gray, mask, show_slice=False)) for flag, gray, mask in tiles])
    return result


def _tile(gray: np.ndarray, mask: np.ndarray, *, show_slice: bool) -> np.ndarray:
    from skimage.segmentation import find_boundaries
    from skimage.transform import resize

    small = resize(gray.astype(np.float32), (TILE, TILE), preserve_range=True, anti_aliasing=True)
    inside = resize(mask.astype(np.float32), (TILE, TILE)) >= 0.5
    # Outlines alone: where the slice is lit, one dark grey (a silhouette, none of its grey levels).
    base = small if show_slice else np.where(small > 0, 40.0, 0.0)
    rgb = np.repeat(base.astype(np.uint8)[..., None], 3, axis=-1)
    rgb[find_boundaries(inside, mode="inner")] = (255, 40, 40)
    return rgb


def _write_sheet(path: Path, tiles: Sequence[tuple[bool, np.ndarray]]) -> None:
    rows = max(1, -(-len(tiles) // COLUMNS))
    sheet = np.zeros((rows * TILE, COLUMNS * TILE, 3), dtype=np.uint8)
    for index, (flagged, tile) in enumerate(tiles):
        r, c = divmod(index, COLUMNS)
        block = tile.copy()
        if flagged:  # a yellow band on top marks a mask the rules call wrong
            block[:4] = (255, 220, 0)
        sheet[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE] = block
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(path, optimize=True)
