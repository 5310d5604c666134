"""Not-assessable detection: real CT slices pass, generated non-CT images are caught."""

import io

import numpy as np
import pytest
from PIL import Image

from inference.assessability import Limits, slice_features
from inference.preprocessing import inspect
from inference.training import read_manifest, unique_records
from inference.training.assessability_fit import dataset_features, fit_assessability, non_ct_images


def png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def ct(dataset_dir):
    records = unique_records(read_manifest(dataset_dir))[::3]  # every third slice: all classes, fast
    folds = np.arange(len(records)) * 5 // len(records)  # contiguous blocks
    return dataset_features(dataset_dir, records), folds


@pytest.fixture(scope="module")
def dataset_dir():
    from tests.dataset import DATASET, dataset_missing

    if not (DATASET / "manifest.csv").exists():
        dataset_missing(f"the shared IQ-OTH/NCCD dataset is not at {DATASET}")
    return DATASET


def test_every_generated_non_ct_image_is_caught_with_a_reason(ct):
    features, folds = ct
    limits, figures = fit_assessability(features, folds)
    assert figures["catch_rate"] == 1.0
    for name, image in non_ct_images(seed=7).items():  # another draw than the one fitted against
        found = inspect(png(image))
        reason = limits.reason(slice_features(found.image, colour=found.colour))
        assert reason, f"{name} was taken for a CT slice"


def test_held_out_ct_slices_are_rarely_flagged(ct):
    features, folds = ct
    _, figures = fit_assessability(features, folds)
    assert figures["false_flag_rate"] <= 0.02


def test_a_colour_photo_is_refused_for_its_colour_and_a_grey_jpeg_is_not(ct):
    features, _ = ct
    limits = Limits.fit(features)
    photo = non_ct_images()["colour photo"]
    found = inspect(png(photo, "JPEG"))
    reason = limits.reason(slice_features(found.image, colour=found.colour))
    assert reason is not None and "colour" in reason
    assert inspect(png(photo.convert("L"), "JPEG")).colour == 0.0


def test_limits_round_trip_through_the_card(ct):
    limits = Limits.fit(ct[0])
    assert Limits.from_dict(limits.as_dict()) == limits
