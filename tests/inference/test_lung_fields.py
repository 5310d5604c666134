"""Lung fields: synthetic phantoms (two dark lungs in a body on a table, in Hounsfield units and
windowed to 8 bits), a few real slices, and heat kept inside them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from inference.lung_fields import check, lung_fields_gray, lung_fields_hu
from inference.preprocessing import gray_to_input, preprocess_gray

SIZE = 384


def _ellipse(centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    rows, cols = np.mgrid[:SIZE, :SIZE]
    return ((rows - centre[0]) / radii[0]) ** 2 + ((cols - centre[1]) / radii[1]) ** 2 <= 1


def _phantom() -> dict[str, np.ndarray]:
    """Regions of an axial chest slice: body, two lungs inside it, a ring of ribs, and a curved
    table under the back with a gap between them."""
    body = _ellipse((180, 192), (110, 160))
    lungs = _ellipse((175, 130), (65, 50)) | _ellipse((175, 254), (65, 50))
    ribs = _ellipse((180, 192), (96, 146)) & ~_ellipse((180, 192), (90, 140))
    # Gaps between the ribs: the chest wall between them is soft tissue.
    angle = np.arctan2(*np.mgrid[:SIZE, :SIZE] - np.array([180, 192])[:, None, None])
    ribs &= np.sin(angle * 14) > -0.2
    rows, cols = np.mgrid[:SIZE, :SIZE]
    table = (np.abs(rows - (300 + ((cols - 192) / 40.0) ** 2)) < 3) & (np.abs(cols - 192) < 180)
    return {"body": body, "lungs": lungs, "ribs": ribs, "table": table & ~body}


def _hounsfield(regions: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    hu = np.full((SIZE, SIZE), -1000.0)
    hu[regions["body"]] = 40.0
    hu[regions["lungs"]] = -850.0
    hu[regions["ribs"]] = 700.0
    hu[regions["table"]] = 300.0
    hu[_ellipse((160, 130), (8, 8))] = 30.0  # a nodule inside a lung
    return hu + rng.normal(0, 15, hu.shape)


def _windowed(hu: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """As the dataset's slices look: a narrow window whose floor leaves lungs, air and much of the
    soft tissue black, soft tissue a speckle, bone bright."""
    tissue = (hu > -400) & (hu < 200)
    gray = np.zeros(hu.shape)
    speckle = rng.random(hu.shape) < 0.7
    gray[tissue & speckle] = rng.uniform(20, 140, hu.shape)[tissue & speckle]
    gray[hu >= 200] = 230
    return gray.astype(np.uint8)


@pytest.fixture
def phantom() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    regions = _phantom()
    hu = _hounsfield(regions, rng)
    return regions, hu, _windowed(hu, rng)


def _assert_lungs(mask: np.ndarray, regions: dict[str, np.ndarray]) -> None:
    lungs = regions["lungs"]
    assert (mask & lungs).sum() / lungs.sum() > 0.9, "most of both lungs is in the mask"
    assert (mask & ~regions["body"]).sum() == 0, "no air outside the body"
    assert (mask & regions["table"]).sum() == 0, "not the table"
    # Inside the ribs: (almost) nothing of the mask out in the chest wall beyond them.
    outer = regions["body"] & ~_ellipse((180, 192), (96, 146))
    assert (mask & outer).sum() < 0.01 * mask.sum()
    assert (mask & ~lungs).sum() / mask.sum() < 0.1


def test_the_lungs_of_a_phantom_in_hounsfield_units(phantom) -> None:
    regions, hu, _ = phantom
    fields = lung_fields_hu(hu)
    assert fields.plausible, fields.problems
    _assert_lungs(fields.mask, regions)
    assert fields.mask[_ellipse((160, 130), (6, 6))].all(), "a nodule inside a lung is in its field"


def test_the_lung_fields_of_a_windowed_phantom(phantom) -> None:
    regions, _, gray = phantom
    fields = lung_fields_gray(gray)
    assert fields.plausible, fields.problems
    _assert_lungs(fields.mask, regions)


def test_the_mask_keeps_the_input_geometry(phantom) -> None:
    _, _, gray = phantom
    wide = np.zeros((SIZE, SIZE + 100), dtype=np.uint8)
    wide[:, 50:-50] = gray
    fields = lung_fields_gray(wide)
    assert fields.mask.shape == wide.shape and fields.plausible
    assert not fields.mask[:, :50].any() and not fields.mask[:, -50:].any()


def test_nothing_to_find_is_said_to_look_wrong() -> None:
    assert lung_fields_gray(np.zeros((256, 256), np.uint8)).problems == ("empty",)
    assert lung_fields_hu(np.full((256, 256), -1000.0)).problems == ("empty",)
    with pytest.raises(ValueError, match="2-D"):
        lung_fields_gray(np.zeros((8, 8, 3), np.uint8))


def test_the_sanity_rules() -> None:
    mask = np.zeros((100, 100), bool)
    assert check(mask) == ("empty",)
    mask[30:70, 20:45] = mask[30:70, 55:80] = True
    assert check(mask) == ()
    one_sided = mask.copy()
    one_sided[:, 50:] = False
    assert "one-sided" in check(one_sided)
    assert "touches the border" in check(np.pad(mask[:, 1:], ((0, 0), (0, 1)), constant_values=True))
    tiny = np.zeros((100, 100), bool)
    tiny[48:52, 40:44] = tiny[48:52, 56:60] = True
    assert any(p.startswith("area") for p in check(tiny))


# Slices of different patients and classes whose fields the dataset check finds plausible; that
# they stay so, and look like lungs (mostly black: the window leaves lung black), is the test.
REAL_SLICES = [
    "normal/Normal case (19).jpg",
    "normal/Normal case (299).jpg",
    "benign/Bengin case (1).jpg",
    "malignant/Malignant case (301).jpg",
    "malignant/Malignant case (421).jpg",
]


@pytest.mark.parametrize("relative", REAL_SLICES)
def test_real_slices_get_plausible_lung_fields(relative: str) -> None:
    import io

    from tests.conftest import dataset_slice

    gray = preprocess_gray(Image.open(io.BytesIO(dataset_slice(relative))), size=SIZE)
    fields = lung_fields_gray(gray)
    assert fields.plausible, fields.problems
    assert (gray[fields.mask] <= 8).mean() > 0.5, "lung fields are mostly black in a windowed slice"
    lowest = np.flatnonzero(fields.mask.any(axis=1))[-1]
    table_top = np.flatnonzero((gray > 100).any(axis=1))[-1]
    assert lowest < table_top - 10, "the mask stays above the table"


def test_heat_is_kept_inside_the_lung_fields(phantom) -> None:
    from inference.predictor import heat_within_lungs

    regions, _, gray = phantom
    image = gray_to_input(gray)
    heat = np.random.default_rng(1).random((SIZE, SIZE)).astype(np.float32)
    kept = heat_within_lungs(heat, image)
    mask = lung_fields_gray(gray).mask
    assert kept.dtype == np.float32 and kept.shape == heat.shape
    assert not kept[~mask].any(), "no heat outside the lung fields"
    assert np.array_equal(kept[mask], heat[mask]), "inside, the heat is untouched (not rescaled)"
    assert not kept[regions["table"]].any() and not kept[~regions["body"]].any()
    blank = gray_to_input(np.zeros((SIZE, SIZE), np.uint8))
    assert not heat_within_lungs(heat, blank).any(), "no lung field found: no heat shown"


def test_the_share_of_heat_inside() -> None:
    from inference.training.heat import inside_share

    heat = np.zeros((10, 10))
    mask = np.zeros((10, 10), bool)
    assert inside_share(heat, mask) is None
    heat[0, :4] = 1.0
    mask[0, :3] = True
    assert inside_share(heat, mask) == pytest.approx(0.75)
