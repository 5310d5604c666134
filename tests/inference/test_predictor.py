"""Serving: the shipped weights load once, classify batches, explain with Grad-CAM."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from inference.preprocessing import CLASS_NAMES, preprocess
from tests.conftest import dataset_slice

from .conftest import SHIPPED_WEIGHTS

pytestmark = pytest.mark.slow

# Real slices of each class, as a sanity check of the shipped ensemble's wiring (each was seen in
# training by four of its five members; the card's out-of-fold figures are the measure).
CLEAR_CASES = {
    "normal/Normal case (322).jpg": "normal",
    "normal/Normal case (318).jpg": "normal",
    "benign/Bengin case (93).jpg": "benign",
    "benign/Bengin case (88).jpg": "benign",
    "malignant/Malignant case (448).jpg": "malignant",
    "malignant/Malignant case (454).jpg": "malignant",
}


@pytest.fixture(scope="module")
def predictor():
    from inference.predictor import get_predictor

    return get_predictor(SHIPPED_WEIGHTS)


def test_shipped_weights_match_their_card(predictor) -> None:
    from inference.artifacts import version_sha256

    card = json.loads((SHIPPED_WEIGHTS / "card.json").read_text())
    assert predictor.hashes == {member["file"]: member["sha256"] for member in card["members"]}
    assert predictor.sha256 == version_sha256(predictor.hashes) and len(predictor.members) == 5
    assert predictor.name == card["name"] and card["class_names"] == list(CLASS_NAMES)
    assert (
        predictor.image_size == card["image_size"]
        and predictor.temperature == card["calibration"]["temperature"]
    )
    # What cross-validation promised: the malignant sensitivity target and calibration that helped.
    assert card["metrics"]["malignant_sensitivity"] >= 0.95
    assert card["calibration"]["ece_after"] < card["calibration"]["ece_before"]


def test_predictor_is_loaded_once_per_process(predictor) -> None:
    from inference.predictor import get_predictor

    assert get_predictor(SHIPPED_WEIGHTS) is predictor
    assert get_predictor(str(SHIPPED_WEIGHTS) + "/") is predictor


def test_default_weights_come_from_settings(settings, predictor) -> None:
    from inference.predictor import get_predictor

    settings.INFERENCE_WEIGHTS_DIR = SHIPPED_WEIGHTS
    assert get_predictor() is predictor


def test_missing_weights_are_a_clear_error(tmp_path) -> None:
    from inference.predictor import get_predictor

    with pytest.raises(FileNotFoundError, match="no model.keras"):
        get_predictor(tmp_path)


def test_shipped_weights_classify_clear_real_slices(predictor) -> None:
    images = [preprocess(dataset_slice(path), size=predictor.image_size) for path in CLEAR_CASES]
    probabilities = predictor.predict(images)
    labels = [CLASS_NAMES[i] for i in probabilities.argmax(axis=1)]
    shown = dict(zip(CLEAR_CASES, probabilities.round(3).tolist(), strict=True))
    assert labels == list(CLEAR_CASES.values()), shown


def test_batches_give_the_same_result_as_single_images(settings, predictor) -> None:
    rng = np.random.default_rng(0)
    size = predictor.image_size
    images = [rng.random((size, size, 3), dtype=np.float32) for _ in range(5)]
    predictor.batch_size = 2  # 5 images -> batches of 2, 2, 1
    try:
        together = predictor.predict(images)
    finally:
        predictor.batch_size = settings.INFERENCE_BATCH_SIZE
    one_by_one = np.concatenate([predictor.predict([image]) for image in images])
    assert together.shape == (5, 3)
    assert np.allclose(together.sum(axis=1), 1.0, atol=1e-9)
    assert np.allclose(together, one_by_one, atol=1e-5)
    assert predictor.predict([]).shape == (0, 3)


def test_wrong_input_shape_is_refused(predictor) -> None:
    with pytest.raises(ValueError, match="expected images of shape"):
        predictor.predict([np.zeros((128, 128, 3), dtype=np.float32)])


def test_heatmap_is_a_normalised_map_over_the_input(predictor) -> None:
    from inference.predictor import heatmap_png

    size = predictor.image_size
    data = dataset_slice("malignant/Malignant case (450).jpg")
    image = preprocess(data, size=size)
    heat = predictor.heatmap(image, within_lungs=False)
    assert heat.shape == (size, size)
    assert heat.min() >= 0 and heat.max() <= 1 and heat.max() == pytest.approx(1.0)
    assert heat.std() > 0.01  # it highlights somewhere, not everywhere
    # As served: the same heat, only inside the lung fields.
    from inference.lung_fields import lung_fields_gray

    shown = predictor.heatmap(image)
    fields = lung_fields_gray(np.rint(image[..., 0] * 255))
    assert fields.plausible and not shown[~fields.mask].any()
    assert np.array_equal(shown[fields.mask], heat[fields.mask])
    with Image.open(io.BytesIO(data)) as original:
        slice_size = original.size
    with Image.open(io.BytesIO(heatmap_png(heat, size=slice_size))) as overlay:
        assert overlay.format == "PNG" and overlay.size == slice_size and overlay.mode == "RGBA"
        alpha = np.asarray(overlay)[..., 3]
    assert alpha.max() > 200 and alpha.min() == 0  # opaque where hot, see-through elsewhere


def test_heatmap_png_without_heat_is_fully_transparent() -> None:
    from inference.predictor import heatmap_png

    with Image.open(io.BytesIO(heatmap_png(np.zeros((256, 256)), size=(300, 200)))) as overlay:
        assert overlay.mode == "RGBA" and overlay.size == (300, 200)
        assert np.all(np.asarray(overlay)[..., 3] == 0)


def test_heatmap_png_undoes_the_padding_and_resize_of_a_wide_slice() -> None:
    # A 200x100 slice is padded to 200x200 (50 rows of black above and below) and resized to 256.
    # Heat on the upper half of the slice's own rows must land on the upper half of the overlay.
    from inference.predictor import heatmap_png

    heat = np.zeros((256, 256), dtype=np.float32)
    heat[64:128, :] = 1.0  # padded rows 50..100 = the slice's rows 0..50
    with Image.open(io.BytesIO(heatmap_png(heat, size=(200, 100)))) as overlay:
        assert overlay.size == (200, 100)
        rgba = np.asarray(overlay).astype(int)
    alpha = rgba[..., 3]
    assert np.all(alpha[2:48] == 255) and np.all(alpha[53:] == 0)
    assert np.all(alpha[0:2] > 200)  # the slice's top edge is hot too: the padding was cropped away
    hot = rgba[10:40]
    assert np.abs(hot[..., 0] - hot[..., 2]).mean() > 20  # a colour map, not grey


def test_heatmap_png_refuses_a_map_that_is_not_2d() -> None:
    from inference.predictor import heatmap_png

    with pytest.raises(ValueError, match="2-D"):
        heatmap_png(np.zeros((4, 4, 3)), size=(4, 4))
