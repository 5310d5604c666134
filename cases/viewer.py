"""The slice viewer's data: what the scan page hands the viewer bundle (static/viewer/) as JSON.

Built from objects the scan page has already prefetched (`selectors.scans_detailed`: the scan's
slices, the prediction's slice results with their slices), so it adds no query per slice.

Each slice says where its pixel values come from (`values`): for a DICOM series its Hounsfield
units (int16, `hounsfield` set: the lung and mediastinum presets apply), else the stored 8-bit
PNG, whose grey values 0-255 are what window/level works on. The viewer maps stored values to
display units as `value * slope + intercept` for every encoding.
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from .models import Prediction, Scan, Slice, SliceResult

# How many "most suspicious" slices the viewer offers to jump to.
RANKED_SLICES = 5


def _values(item: Slice, image_url: str) -> dict[str, Any]:
    """Where the viewer reads a slice's values: Hounsfield units (int16) for a DICOM slice, else
    the stored 8-bit grey image."""
    if item.hounsfield:
        url = reverse("cases:slice_hounsfield", args=[item.pk])
        return {"url": url, "encoding": "int16", "slope": 1, "intercept": 0}
    return {"url": image_url, "encoding": "png8", "slope": 1, "intercept": 0}


def viewer_data(scan: Scan, prediction: Prediction | None) -> dict[str, Any]:
    """The viewer's JSON for `scan`, with `prediction`'s per-slice results where given.

    `slices` are in position order, positions 1-based; `ranked` holds the positions of the most
    suspicious assessable slices, most suspicious first (ties: the earlier slice first)."""
    results: dict[int, SliceResult] = {}
    if prediction is not None:
        results = {result.slice_id: result for result in prediction.slice_results.all()}
    slices: list[dict[str, Any]] = []
    ranks: list[tuple[int, SliceResult]] = []
    for number, item in enumerate(sorted(scan.slices.all(), key=lambda s: s.position), start=1):
        result = results.get(item.pk)
        if result is not None:
            ranks.append((number, result))
        image_url = reverse("cases:slice_image", args=[item.pk])
        slices.append(
            {
                "id": item.pk,
                "position": number,
                "image": image_url,
                "width": item.width,
                "height": item.height,
                "values": _values(item, image_url),
                "heatmap": (
                    reverse("cases:slice_result_heatmap", args=[result.pk])
                    if result is not None and result.heatmap
                    else None
                ),
                "p_malignant": result.p_malignant if result is not None else None,
                "assessable": result.assessable if result is not None else None,
            }
        )
    suspicious = [
        (result.p_malignant, number)
        for number, result in ranks
        if result.assessable and result.p_malignant is not None
    ]
    suspicious.sort(key=lambda pair: (-pair[0], pair[1]))
    return {
        "scan": scan.pk,
        "hounsfield": scan.is_dicom,
        "slices": slices,
        "ranked": [number for _, number in suspicious[:RANKED_SLICES]],
    }
