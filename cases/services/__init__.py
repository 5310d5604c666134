"""Everything that writes to the clinical record, one module per concern.

`accounts` (clinicians, care teams, their tokens and sessions), `patients`, `uploads` (checking
and storing a study's slices), `reviews`, `predictions` (asking for one: request, rerun, the
sweep), `prediction_runs` (the worker's state machine: claim, run, store, fail, release),
`media_sweep` (files no row references) and `retention` (purging a patient's record). Functions
are `<noun>_<verb>` with keyword-only arguments; the public ones are re-exported here, so callers
write `services.scan_upload(...)`.
"""

from .accounts import credentials_revoke, token_issue, user_create
from .media_sweep import SweepReport, media_sweep
from .patients import patient_create, patient_update
from .prediction_runs import PredictionRetry, prediction_execute
from .predictions import (
    PredictionConflict,
    prediction_enqueue,
    prediction_request,
    prediction_rerun,
    predictions_sweep,
)
from .retention import (
    PurgeSummary,
    RetentionError,
    patient_purge,
    patient_purge_plan,
    patients_to_purge,
)
from .reviews import ReportConflict, addendum_add, review_submit, verdict_for
from .uploads import CheckedSlice, UploadError, display_name, scan_upload, slice_check

__all__ = [
    "CheckedSlice",
    "PredictionConflict",
    "PredictionRetry",
    "PurgeSummary",
    "ReportConflict",
    "RetentionError",
    "SweepReport",
    "UploadError",
    "addendum_add",
    "credentials_revoke",
    "display_name",
    "media_sweep",
    "patient_create",
    "patient_purge",
    "patient_purge_plan",
    "patient_update",
    "patients_to_purge",
    "prediction_enqueue",
    "prediction_execute",
    "prediction_request",
    "prediction_rerun",
    "predictions_sweep",
    "review_submit",
    "verdict_for",
    "scan_upload",
    "slice_check",
    "token_issue",
    "user_create",
]
