"""Studies in every state a worklist shows, built through the real upload and review services."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import TestCase

from cases import services
from cases.models import Patient, Prediction, Review, Scan, SliceResult
from tests.conftest import image_bytes, upload

FINDINGS = {
    "malignant": "Suspicious for malignancy.",
    "benign": "No sign of malignancy; most likely benign.",
    "normal": "No sign of malignancy; most likely normal.",
}


def study(
    patient: Patient | Any,  # a factory-made Patient is typed as its factory
    user: Any,
    *,
    suspicion: float | None = None,
    status: str = "succeeded",
    study_date: date = date(2026, 11, 1),
    slices: int = 2,
) -> Scan:
    """A scan whose prediction finished (or not) as a worker would leave it: with `suspicion`
    None and status succeeded, no slice could be assessed."""
    with TestCase.captureOnCommitCallbacks(execute=False):
        scan = services.scan_upload(
            patient=patient,
            files=[upload(f"{i}.png", image_bytes()) for i in range(slices)],
            uploaded_by=user,
            study_date=study_date,
        )
    prediction = scan.predictions.get()
    if status != "succeeded":
        Prediction.objects.filter(pk=prediction.pk).update(
            status=status, error="It broke." if status == "failed" else ""
        )
        return scan
    if suspicion is None:
        Prediction.objects.filter(pk=prediction.pk).update(
            status="succeeded",
            finding="No slice of this study could be assessed.",
            not_assessable_slices=slices,
        )
        return scan
    label = "malignant" if suspicion >= 0.5 else "benign"
    probabilities = {
        "p_malignant": suspicion,
        "p_benign": (1 - suspicion) * 0.8,
        "p_normal": (1 - suspicion) * 0.2,
    }
    for position, item in enumerate(scan.slices.all()):
        heatmap = default_storage.save("heatmaps/test.png", ContentFile(image_bytes(mode="RGB")))
        SliceResult.objects.create(
            prediction=prediction,
            slice=item,
            label=label,
            heatmap=heatmap if position == 0 else "",
            **{**probabilities, "p_malignant": suspicion / (position + 1)},
        )
    Prediction.objects.filter(pk=prediction.pk).update(
        status="succeeded",
        label=label,
        suspicion=suspicion,
        suspicious_slices=int(suspicion >= 0.5),
        finding=FINDINGS[label],
        **probabilities,
    )
    return scan


def sign(
    scan: Scan,
    user: Any,
    label: str,
    *,
    comment: str = "",
    amends: Review | None = None,
    kind: str = Review.Kind.REPORT,
) -> Review:
    """Sign the study's report on the scan's prediction (or, with `kind`, a second opinion)."""
    prediction = scan.predictions.get()
    return services.review_submit(
        prediction=prediction,
        reviewer=user,
        verdict=services.verdict_for(prediction, label),
        label=label,
        comment=comment,
        supersedes=amends.pk if amends else None,
        kind=kind,
    )
