"""The clinical record: care teams, patients, studies, their series (scans) and slices
(`records`), predictions with their per-slice results and earlier runs (`predictions`), and
clinicians' reviews (`reviews`)."""

from .predictions import Prediction, PredictionQuerySet, PredictionRun, Probabilities, SliceResult
from .records import LABEL_CHOICES, CareTeam, Patient, Scan, Slice, Study
from .reviews import Review

__all__ = [
    "LABEL_CHOICES",
    "CareTeam",
    "Patient",
    "Prediction",
    "PredictionQuerySet",
    "PredictionRun",
    "Probabilities",
    "Review",
    "Scan",
    "Slice",
    "SliceResult",
    "Study",
]
