"""Lung fields without downloaded weights: a classical segmentation (threshold, connected
components, convex hulls, morphology; scikit-image) that keeps Grad-CAM heat inside the chest.

One method for two sources. Tissue is thresholded: in Hounsfield units (DICOM series) what is
denser than about -400 HU, so the lungs (parenchyma about -950 to -400 HU) are dark; in the
dataset's windowed 8-bit slices (about 90% of pixels are 0: lungs, fat and the air outside alike
black) where lit speckle is dense. The body is the tissue without the table (thin, or below the
back), made convex; the lungs are the one or two largest dark regions inside it that are not air
along its outline, each made convex (a nodule or a mass at a lung's edge stays in), and, in a
windowed slice, cut back to the convex hull of the bones (the ribs), since there the chest wall
between the ribs is often as black as the lung. Outside air, the table, the chest wall and the
axillae are outside the mask; the mediastinum is where the two lungs' hulls leave it out.

Parameters are in pixels of a 256-pixel working size: a mask is made there and scaled back, so
it does not depend on the input's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WORK_SIZE = 256
# Tissue in Hounsfield units: lungs (about -950 to -400 HU) and the air outside are below it.
HU_TISSUE = -400.0
# Lit pixels in a windowed 8-bit slice (0-255; the window's floor is 0, JPEG noise a few levels),
# and the share of them nearby that makes tissue.
GRAY_LIT = 4
LIT_SHARE = 0.25
# Bone in a windowed 8-bit slice: the brightest of it (ribs, sternum, spine).
GRAY_BONE = 170
# Plausible share of a slice's square for both lungs together (sanity rule of the dataset check).
AREA_RANGE = (0.04, 0.55)
# Openings tried in turn (working pixels) until the mask looks right: the smallest that cuts the
# lungs from the air outside through gaps in the chest wall keeps the most detail.
OPENING_RADII = (2, 3, 4, 6)
# A dark region with more than this share of its pixels within OUTLINE_PX of the body's convex
# outline is air outside the body, not a lung.
OUTLINE_PX = 3
OUTLINE_SHARE = 0.1


@dataclass(frozen=True)
class LungFields:
    """A mask (bool, the input's shape) and why it may be wrong (empty where it looks right)."""

    mask: np.ndarray
    problems: tuple[str, ...]

    @property
    def plausible(self) -> bool:
        return not self.problems


def lung_fields_hu(hounsfield: np.ndarray) -> LungFields:
    """The lungs of an axial CT slice in Hounsfield units (2-D array)."""
    hu = _working(np.asarray(hounsfield, dtype=np.float32))
    return _fields(_blur(hu, 1.0) > HU_TISSUE, np.shape(hounsfield))


def lung_fields_gray(gray: np.ndarray) -> LungFields:
    """The lung fields inside the ribs of a windowed 8-bit slice (2-D, 0-255)."""
    # Soft tissue here is speckle (about 3 pixels in 4 above black) and lung is black: the share of
    # lit pixels nearby tells them apart better than their grey level.
    gray = np.asarray(gray, dtype=np.float32)
    lit = _working(gray > GRAY_LIT)
    bone = _working(gray) > GRAY_BONE
    return _fields(_blur(lit, 1.5) > LIT_SHARE, np.shape(gray), bone=bone)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.filters import gaussian

    return np.asarray(gaussian(image, sigma=sigma, mode="reflect", preserve_range=True))


def _working(image: np.ndarray) -> np.ndarray:
    if image.ndim != 2 or min(image.shape) < 16:
        raise ValueError(f"a slice is a 2-D image of at least 16 pixels each way, not shape {image.shape}")
    return _resize(image.astype(np.float32), (WORK_SIZE, WORK_SIZE), order=1)


def _fields(tissue: np.ndarray, shape: tuple[int, ...], *, bone: np.ndarray | None = None) -> LungFields:
    """Lung fields from a tissue map at the working size, scaled back to `shape`; inside the
    convex hull of the body's `bone` where given (the ribs: a lung that joins dark fat through a
    gap in a windowed chest wall is cut back to them)."""
    from skimage import morphology

    solid = morphology.closing(tissue, morphology.disk(2))
    body = _body(solid)
    if not body.any():
        return LungFields(mask=np.zeros(shape, dtype=bool), problems=("empty",))
    hull = morphology.convex_hull_image(body)
    cage = hull
    if bone is not None and (bone & body).sum() >= 50:
        cage = morphology.convex_hull_image(bone & body)
    columns = np.flatnonzero(hull.any(axis=0))
    midline = (columns[0] + columns[-1] + 1) / 2 * shape[1] / WORK_SIZE
    tried = []
    for radius in OPENING_RADII:
        mask = _lungs(hull & ~solid, hull, radius) & cage
        full = _resize(mask.astype(np.float32), shape, order=1) >= 0.5
        fields = LungFields(mask=full, problems=check(full, midline=midline))
        if fields.plausible:
            return fields
        tried.append(fields)
    return min(tried, key=lambda f: len(f.problems))


def _resize(image: np.ndarray, shape: tuple[int, ...], *, order: int) -> np.ndarray:
    from skimage.transform import resize

    if image.shape == shape:
        return image
    return np.asarray(resize(image, shape, order=order, preserve_range=True, anti_aliasing=False))


def _lungs(dark: np.ndarray, hull: np.ndarray, radius: int) -> np.ndarray:
    """The one or two largest dark regions inside the body that are not air outside it, each
    filled and made convex. Air outside lies in slivers along the body's outline (the hollows of
    the back, the axillae, under the table's edge); a lung touches the outline at most where the
    window leaves a gap in the chest wall, and the opening cuts narrow joins."""
    from skimage import measure, morphology

    dark = morphology.opening(dark, morphology.disk(radius))
    near_outline = hull & ~morphology.erosion(hull, morphology.disk(OUTLINE_PX))
    labels = measure.label(dark, connectivity=1)
    regions = sorted(
        (
            r
            for r in measure.regionprops(labels)
            if near_outline[r.coords[:, 0], r.coords[:, 1]].mean() < OUTLINE_SHARE
        ),
        key=lambda r: r.area,
        reverse=True,
    )
    keep = [r for r in regions[:2] if r.area >= 0.004 * dark.size]
    if len(keep) == 2 and keep[1].area < 0.15 * keep[0].area:
        keep = keep[:1]  # a second dark spot much smaller than the first is not a lung
    mask = np.zeros_like(dark)
    for region in keep:
        # Filled and convex: a nodule or a mass at the lung's edge is tissue, not dark, yet in it.
        mask |= morphology.convex_hull_image(labels == region.label)
    return mask & ~near_outline


def _body(solid: np.ndarray) -> np.ndarray:
    """The body's pieces, table and thin lines left out: what an opening keeps (the table's top is
    a thin crescent) and what starts above the bottom of the largest piece (the table's thick base
    lies below the back). The chest wall's pieces need not touch: the window leaves gaps in it."""
    from skimage import measure, morphology

    thick = morphology.opening(solid, morphology.disk(3))
    core = _largest(thick)
    if not core.any():
        return core
    bottom = np.flatnonzero(core.any(axis=1))[-1]
    labels = measure.label(thick, connectivity=2)
    pieces = [r.label for r in measure.regionprops(labels) if r.bbox[0] < bottom and r.area >= 20]
    return np.isin(labels, pieces)


def _largest(mask: np.ndarray) -> np.ndarray:
    from skimage import measure

    labels = measure.label(mask, connectivity=1)
    if labels.max() == 0:
        return np.zeros_like(mask)
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    return labels == int(counts.argmax())


def check(mask: np.ndarray, *, midline: float | None = None) -> tuple[str, ...]:
    """Why a lung mask looks wrong, by simple rules: empty, touching the image's border, an area
    outside the plausible range, or lying on one side of the body only (split at `midline`, a
    column; the image's middle by default)."""
    if not mask.any():
        return ("empty",)
    problems = []
    if mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any():
        problems.append("touches the border")
    area = float(mask.mean())
    if not AREA_RANGE[0] <= area <= AREA_RANGE[1]:
        problems.append(f"area {area:.3f} outside {AREA_RANGE[0]}-{AREA_RANGE[1]}")
    # Two-sided: each half of the body (split at its middle column) holds a fair share of the mask.
    centre = mask.shape[1] / 2 if midline is None else midline
    left = float(mask[:, : int(round(centre))].sum()) / float(mask.sum())
    if not 0.2 <= left <= 0.8:
        problems.append("one-sided")
    return tuple(problems)
