"""The clinical record: care teams, patients, studies, their series (scans) and slices
(`records`), predictions with their per-slice results and earlier runs (`predictions`), and
clinicians' readings: each study's report, its addenda, and second opinions (`reviews`)."""

from .predictions import Prediction, PredictionQuerySet, PredictionRun, Probabilities, SliceResult
from .records import LABEL_CHOICES, CareTeam, Patient, Scan, Slice, Study
from .reviews import Addendum, Review, ReviewQuerySet, current_report, disagreement, with_report_label

__all__ = [
    "LABEL_CHOICES",
    "Addendum",
    "CareTeam",
    "Patient",
    "Prediction",
    "PredictionQuerySet",
    "PredictionRun",
    "Probabilities",
    "Review",
    "ReviewQuerySet",
    "Scan",
    "Slice",
    "SliceResult",
    "Study",
    "current_report",
    "disagreement",
    "with_report_label",
]
