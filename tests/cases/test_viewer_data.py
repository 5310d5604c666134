"""viewer_data: the viewer's JSON from the scan page's prefetched objects, no query per slice."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from cases import selectors, services
from cases.models import Prediction, SliceResult
from cases.viewer import RANKED_SLICES, viewer_data
from tests.conftest import image_bytes, upload

pytestmark = pytest.mark.django_db


def _scan(patient, user, count, django_capture_on_commit_callbacks):
    files = [upload(f"s{n}.png", image_bytes(size=(64 + n, 64))) for n in range(count)]
    with django_capture_on_commit_callbacks(execute=False):
        return services.scan_upload(patient=patient, files=files, uploaded_by=user)


def _results(prediction: Prediction, p_malignant: list[float | None], heatmaps: set[int]) -> None:
    for index, item in enumerate(prediction.scan.slices.order_by("position")):
        p = p_malignant[index]
        fields = (
            {"assessable": False, "reason": "not a CT slice"}
            if p is None
            else {"label": "normal", "p_normal": 1 - p, "p_benign": 0.0, "p_malignant": p}
        )
        heatmap = (
            default_storage.save(f"heatmaps/h{index}.png", ContentFile(image_bytes()))
            if index in heatmaps
            else ""
        )
        SliceResult.objects.create(prediction=prediction, slice=item, heatmap=heatmap, **fields)


def _loaded(user, scan_pk):
    scan = selectors.scan_get(user, scan_pk)
    return scan, next(iter(scan.predictions.all()))


def test_slices_in_position_order_with_urls_and_no_result(patient, alice, django_capture_on_commit_callbacks):
    scan = _scan(patient, alice, 3, django_capture_on_commit_callbacks)
    scan, prediction = _loaded(alice, scan.pk)
    data = viewer_data(scan, None)
    slices = list(scan.slices.order_by("position"))
    assert data["scan"] == scan.pk and data["hounsfield"] is False and data["ranked"] == []
    assert [s["position"] for s in data["slices"]] == [1, 2, 3]
    assert [s["id"] for s in data["slices"]] == [s.pk for s in slices]
    first = data["slices"][0]
    url = reverse("cases:slice_image", args=[slices[0].pk])
    assert first == {
        "id": slices[0].pk,
        "position": 1,
        "image": url,
        "width": slices[0].width,
        "height": slices[0].height,
        "values": {"url": url, "encoding": "png8", "slope": 1, "intercept": 0},
        "heatmap": None,
        "p_malignant": None,
        "assessable": None,
    }
    # A queued prediction without results gives the same: nothing to rank, no heatmaps.
    assert viewer_data(scan, prediction)["slices"] == data["slices"]


def test_results_heatmaps_and_ranking(patient, alice, django_capture_on_commit_callbacks):
    scan = _scan(patient, alice, 8, django_capture_on_commit_callbacks)
    # Slice 2 is not assessable (never ranked); slices 4 and 7 tie (the earlier first).
    _results(scan.predictions.get(), [0.1, None, 0.5, 0.8, 0.2, 0.05, 0.8, 0.9], heatmaps={3, 6, 7})
    scan, prediction = _loaded(alice, scan.pk)
    data = viewer_data(scan, prediction)
    assert data["ranked"] == [8, 4, 7, 3, 5][:RANKED_SLICES]
    by_position = {s["position"]: s for s in data["slices"]}
    assert by_position[2]["assessable"] is False and by_position[2]["p_malignant"] is None
    assert by_position[8]["p_malignant"] == pytest.approx(0.9) and by_position[8]["assessable"] is True
    result = prediction.slice_results.get(slice__position=7)
    assert by_position[8]["heatmap"] == reverse("cases:slice_result_heatmap", args=[result.pk])
    assert [p for p, s in by_position.items() if s["heatmap"]] == [4, 7, 8]


def test_no_query_per_slice(patient, alice, django_capture_on_commit_callbacks, django_assert_num_queries):
    for count in (2, 9):
        scan = _scan(patient, alice, count, django_capture_on_commit_callbacks)
        _results(scan.predictions.get(), [0.5] * count, heatmaps={0})
        scan, prediction = _loaded(alice, scan.pk)
        with django_assert_num_queries(0):
            data = viewer_data(scan, prediction)
        assert len(data["slices"]) == count
