"""HTML pages. Thin: validate, call one service or selector, render."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from csp.constants import NONCE
from csp.decorators import csp_update
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from audit import trail
from core.http import error_response
from inference.models import ModelVersion
from inference.preprocessing import ACCEPTED_FORMATS_TEXT, CLASS_NAMES
from inference.services import model_version_active
from pacs.ingest import study_upload

from . import selectors, services
from .agreement import agreement_by_model_version, reader_agreement
from .files import (
    heatmap_response,
    slice_hounsfield_response,
    slice_image_response,
    slice_thumbnail_response,
    structured_report_response,
)
from .forms import AddendumForm, CompareForm, PatientForm, ReadingForm, ScanUploadForm
from .http import wants_json
from .models import Prediction, Review, Scan, SliceResult, Study
from .urls_converters import ID_REGEX
from .viewer import viewer_data
from .worklist import WorklistFilter, worklist

PAGE_SIZE = 25
REPORT_KEY_SLICES = 4
COMPARE_KEY_SLICES = 2
HISTORY_THUMBNAILS = 8


def _page(request: HttpRequest, items: Sequence[Any] | QuerySet[Any]) -> Page[Any]:
    return Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))


def _act(request: HttpRequest, target: Any, action: Callable[[], object], success: str) -> HttpResponse:
    """Run the service behind a button; a refusal becomes a message on the page, never an error."""
    try:
        action()
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, success)
    return redirect(target)


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    """The worklist: studies to read, unread first, the most suspicious on top."""
    filters = WorklistFilter(request.GET or None, queryset=worklist(request.user), request=request)
    refused = filters.is_bound and not filters.is_valid()
    scans = filters.queryset.none() if refused else filters.qs
    trail.read_list("worklist", detail="filtered" if filters.is_bound else "")
    context = {
        "filters": filters,
        "page": _page(request, scans),
        "teams": selectors.teams_for(request.user),
        "query": _query_without_page(request),
    }
    return render(request, "cases/dashboard.html", context, status=400 if refused else 200)


def _query_without_page(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


@login_required
@require_GET
def patient_list(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:100]
    # The latest study's result that counts: the signed reading, else the AI's (unread).
    result = request.GET.get("result", "")
    choices = dict(selectors.RESULT_CHOICES)
    unknown = result if result and result not in choices else ""
    result = "" if unknown else result
    patients = selectors.patients_with_latest_result(request.user, query=query, result=result)
    trail.read_list("patient_list", detail="searched" if query else "")
    return render(
        request,
        "cases/patient_list.html",
        {
            "page": _page(request, patients),
            "q": query,
            "result": result,
            "results": selectors.RESULT_CHOICES,
            "unknown_result": unknown[:40],
            "query": _query_without_page(request),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def patient_create(request: HttpRequest) -> HttpResponse:
    if not selectors.teams_for(request.user).exists():
        messages.error(request, "You are not in a care team yet; ask an administrator to add you to one.")
        return redirect("cases:patient_list")
    form = PatientForm(request.POST or None, user=selectors.signed_in(request.user))
    if request.method == "POST" and form.is_valid():
        patient = services.patient_create(created_by=selectors.signed_in(request.user), **form.cleaned_data)
        messages.success(request, f"Patient {patient} registered.")
        return redirect(patient)
    return render(request, "cases/patient_form.html", {"form": form, "title": "New patient"})


@login_required
@require_http_methods(["GET", "POST"])
def patient_edit(request: HttpRequest, pk: int) -> HttpResponse:
    patient = selectors.patient_get(request.user, pk)
    form = PatientForm(request.POST or None, instance=patient, user=selectors.signed_in(request.user))
    if request.method == "POST" and form.is_valid():
        services.patient_update(
            patient=patient, updated_by=selectors.signed_in(request.user), **form.cleaned_data
        )
        messages.success(request, "Patient details saved.")
        return redirect(patient)
    if request.method == "GET":
        trail.read(patient)
    return render(
        request, "cases/patient_form.html", {"form": form, "title": f"Edit {patient}", "patient": patient}
    )


@login_required
@require_GET
def patient_detail(request: HttpRequest, pk: int) -> HttpResponse:
    patient = selectors.patient_get(request.user, pk)
    studies = selectors.patient_history(request.user, patient, thumbnails=HISTORY_THUMBNAILS)
    page = Paginator(studies, selectors.HISTORY_STUDIES_PER_PAGE).get_page(request.GET.get("page"))
    trail.read(patient, object_type="history")
    summaries = [_study_summary(study) for study in page]
    series = [item["scan"] for summary in summaries for item in summary["series"]]
    # Compare, by default, this page's first series with the first of another study (if any).
    other = next((scan for scan in series[1:] if scan.study_id != series[0].study_id), None)
    return render(
        request,
        "cases/patient_detail.html",
        {
            "patient": patient,
            "page": page,
            "studies": summaries,
            "compare_series": series,
            "compare_with": other or (series[1] if len(series) > 1 else None),
            "aggregation_rule": Prediction.AGGREGATION_RULE,
        },
    )


def _study_summary(study: Study) -> dict[str, Any]:
    """A study of the history and its series, each with its first slices' thumbnails."""
    series = [
        {
            "scan": scan,
            "thumbnails": scan.thumbnail_slices,  # type: ignore[attr-defined]  # prefetched
            "more": max(0, scan.slice_count - HISTORY_THUMBNAILS),  # type: ignore[attr-defined]  # annotated
            "next_position": HISTORY_THUMBNAILS + 1,
        }
        for scan in study.series.all()
    ]
    return {"study": study, "series": series}


@login_required
@require_GET
def patient_compare(request: HttpRequest, pk: int) -> HttpResponse:
    """Two studies of one patient side by side (?a=<scan id>&b=<scan id>)."""
    patient = selectors.patient_get(request.user, pk)
    form = CompareForm(request.GET, studies=selectors.patient_studies(request.user, patient))
    if not form.is_valid():
        messages.error(request, " ".join(str(m) for errors in form.errors.values() for m in errors))
        return redirect(patient)
    columns = []
    for scan in (form.cleaned_data["a"], form.cleaned_data["b"]):
        trail.read(scan)
        prediction = _prediction_to_read(list(scan.predictions.all()))
        key = _key_slices(prediction, COMPARE_KEY_SLICES)
        columns.append({"scan": scan, "prediction": prediction, "key_slices": key})
    return render(request, "cases/patient_compare.html", {"patient": patient, "columns": columns})


def _key_slices(prediction: Prediction | None, count: int) -> list[SliceResult]:
    """The prediction's most suspicious slice results (heatmaps included)."""
    if prediction is None:
        return []
    results = SliceResult.objects.filter(prediction=prediction, assessable=True, p_malignant__isnull=False)
    return list(results.select_related("slice").order_by("-p_malignant", "slice_id")[:count])


@login_required
@require_http_methods(["GET", "POST"])
def scan_upload(request: HttpRequest, pk: int) -> HttpResponse:
    patient = selectors.patient_get(request.user, pk)
    json_wanted = wants_json(request)
    form = ScanUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST":
        if form.is_valid():
            try:
                scans = study_upload(
                    patient=patient,
                    files=form.cleaned_data["files"],
                    uploaded_by=selectors.signed_in(request.user),
                    study_date=form.cleaned_data["study_date"],
                    note=form.cleaned_data["note"],
                    confirm_patient=form.cleaned_data["confirm_patient"],
                    priority=form.cleaned_data["priority"] or None,
                    indication=form.cleaned_data["indication"],
                )
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                slices = sum(scan.slices.count() for scan in scans)
                messages.success(
                    request,
                    f"{slices} slice(s) uploaded as {len(scans)} scan(s); the prediction is queued."
                    if len(scans) > 1
                    else f"{slices} slice(s) uploaded; the prediction is queued.",
                )
                target = scans[0].get_absolute_url() if len(scans) == 1 else patient.get_absolute_url()
                if json_wanted:
                    return JsonResponse({"redirect": target}, status=201)
                return redirect(target)
        if json_wanted:
            return _form_error_response(form)
        status = 400
    else:
        trail.read(patient, object_type="upload_form")  # the form shows who the scans are for
        status = 200
    context = {
        "patient": patient,
        "form": form,
        "accepted_formats": ACCEPTED_FORMATS_TEXT,
        "max_files": settings.UPLOAD_MAX_FILES,
        "max_mb": settings.UPLOAD_MAX_FILE_BYTES // (1024 * 1024),
    }
    return render(request, "cases/scan_upload.html", context, status=status)


def _form_error_response(form: ScanUploadForm) -> JsonResponse:
    errors = {
        "non_field_errors" if field == "__all__" else field: [error["message"] for error in errors]
        for field, errors in form.errors.get_json_data().items()
    }
    return error_response("The upload was refused; nothing was stored. See errors.", errors)


@login_required
@require_GET
def scan_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The reading room: the slices in the viewer, beside the AI result and the sign-off."""
    scan = selectors.scan_get(request.user, pk)
    trail.read(scan)
    predictions = list(scan.predictions.all())
    prediction = _prediction_to_read(predictions)
    try:
        active = model_version_active()
    except ModelVersion.DoesNotExist:  # an admin switched every version off: nothing to apply
        active = None
    context = {
        "scan": scan,
        "patient": scan.patient,
        "prediction": prediction,
        "others": [p for p in predictions if p is not prediction],
        **_reading_context(prediction, request.user, selectors.study_readings(scan.study_id)),
        "viewer": viewer_data(scan, prediction),
        "active_version": active,
        "can_apply_active": active is not None and all(p.model_version_id != active.pk for p in predictions),
        "aggregation_rule": Prediction.AGGREGATION_RULE,
    }
    return render(request, "cases/scan_detail.html", context)


def _prediction_to_read(predictions: list[Prediction]) -> Prediction | None:
    """The newest succeeded prediction (what a clinician signs), else the newest of any state."""
    succeeded = [p for p in predictions if p.status == Prediction.Status.SUCCEEDED]
    return next(iter(succeeded or predictions), None)


def age_at(birth_date: date, on: date) -> int:
    """Age in whole years on a day (the study's, for a report: not today's)."""
    return on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))


_CSS_PLAIN = frozenset(" .,:-_")


def _css_string(text: str) -> SafeString:
    """`text` as a CSS string: every character but ASCII letters, digits and a few harmless marks
    hex-escaped (`\\b7 `: the space ends the escape and is not shown), so that nothing in it (a
    quote, a backslash, "<", a newline) can end the string or the <style> element it is in."""
    body = "".join(c if (c.isascii() and c.isalnum()) or c in _CSS_PLAIN else f"\\{ord(c):x} " for c in text)
    return mark_safe(f'"{body}"')  # letters, digits, _CSS_PLAIN and hex escapes only


def _report_context(scan: Scan, readings: list[Review]) -> dict[str, Any]:
    """What the printed report adds to a scan: the study date and the patient's age on it, the
    study's current signed report (its corrections and addenda) and second opinions, and the
    running header and footer every printed page carries."""
    patient = scan.patient
    study_date = scan.study.study_date or scan.study_date or timezone.localdate(scan.created_at)
    report = next((r for r in readings if r.is_report and r.is_current), None)
    if report is None:
        state = "Preliminary: no signed reading"
    else:
        state = "Signed reading, amended" if report.supersedes_id else "Signed reading"
    return {
        "study": scan.study,
        "study_date": study_date,
        "age_at_study": age_at(patient.birth_date, study_date),
        "report": report,
        "report_versions": [r for r in readings if r.is_report and not r.is_current],
        "second_opinions": [r for r in readings if not r.is_report and r.is_current],
        "running": {
            "patient": _css_string(f"{patient.name} \u00b7 MRN {patient.mrn}"),
            "dates": _css_string(f"Born {patient.birth_date:%Y-%m-%d} \u00b7 Study {study_date:%Y-%m-%d}"),
            "state": _css_string(state),
        },
    }


@login_required
@require_GET
# The running header's patient is in a <style> of the page's own, allowed by its nonce (django-csp
# types its decorators for views of the request alone).
@csp_update({"style-src": [NONCE]})  # type: ignore[arg-type]
def scan_report(request: HttpRequest, pk: int) -> HttpResponse:
    """A printable case report: the clinician's signed reading first, then the patient and study,
    and the AI output as a labelled appendix; patient identification and page x of y on every
    printed page."""
    scan = selectors.scan_get(request.user, pk)
    trail.read(scan, object_type="report")
    prediction = _prediction_to_read(list(scan.predictions.all()))
    readings = selectors.study_readings(scan.study_id)
    context = {
        "scan": scan,
        "patient": scan.patient,
        "prediction": prediction,
        "readings": readings,
        "key_slices": _key_slices(prediction, REPORT_KEY_SLICES),
        "aggregation_rule": Prediction.AGGREGATION_RULE,
        **_report_context(scan, readings),
    }
    return render(request, "cases/scan_report.html", context)


@login_required
@require_POST
def scan_predict(request: HttpRequest, pk: int) -> HttpResponse:
    scan = selectors.scan_get(request.user, pk)
    return _act(
        request,
        scan,
        lambda: services.prediction_request(scan=scan, requested_by=selectors.signed_in(request.user)),
        "Queued a prediction with the active model version.",
    )


@login_required
@require_GET
def prediction_detail(request: HttpRequest, pk: int) -> HttpResponse:
    prediction = selectors.prediction_get(request.user, pk)
    trail.read(prediction)
    return render(
        request,
        "cases/prediction_detail.html",
        {
            "prediction": prediction,
            "scan": prediction.scan,
            "patient": prediction.scan.patient,
            "aggregation_rule": Prediction.AGGREGATION_RULE,
            **_reading_context(prediction, request.user, selectors.study_readings(prediction.scan.study_id)),
        },
    )


def _reading_context(
    prediction: Prediction | None, user: selectors.Viewer, readings: list[Review]
) -> dict[str, Any]:
    """The study's readings, its current report (what an addendum is added to) and the sign-off
    form for the prediction read (none while there is none)."""
    return {
        "readings": readings,
        "study_report": selectors.report_of(readings),
        "reading_form": _reading_form(readings, user) if prediction else None,
        "addendum_form": AddendumForm(),
    }


def _reading_form(readings: list[Review], user: selectors.Viewer, data: Any = None) -> ReadingForm:
    """The sign-off form, offering to amend the study's current readings (your own first); a
    second opinion where someone else has signed the report, the report otherwise."""
    current = sorted((r for r in readings if r.is_current), key=lambda r: r.reviewer_id != user.pk)
    own = next((r for r in current if r.reviewer_id == user.pk), None)
    reported = any(r.is_report for r in current)
    kind = Review.Kind.SECOND_OPINION if reported and own is None else Review.Kind.REPORT
    return ReadingForm(
        data, correctable=current, initial={"supersedes": own.pk if own else None, "kind": kind}
    )


@login_required
@require_POST
def review_submit(request: HttpRequest, pk: int) -> HttpResponse:
    """Sign the study's report on the prediction, record a second opinion, or amend a reading;
    back to the scan's reading room. A second signature of the report is refused with who signed."""
    prediction = selectors.prediction_get(request.user, pk)
    target = prediction.scan.get_absolute_url() + "#reading"
    form = _reading_form(selectors.study_readings(prediction.scan.study_id), request.user, request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(str(m) for errors in form.errors.values() for m in errors))
        return redirect(target)
    label = form.cleaned_data["label"]
    return _act(
        request,
        target,
        lambda: services.review_submit(
            prediction=prediction,
            reviewer=selectors.signed_in(request.user),
            verdict=services.verdict_for(prediction, label),
            label=label,
            comment=form.cleaned_data["comment"],
            supersedes=form.cleaned_data["supersedes"],
            kind=form.cleaned_data["kind"],
        ),
        "Your reading is signed.",
    )


@login_required
@require_POST
def addendum_add(request: HttpRequest, pk: int) -> HttpResponse:
    """Add an addendum to the study's signed report; back to the reading room of its series."""
    study = selectors.study_get(request.user, pk)
    report = selectors.report_of(selectors.study_readings(study))
    series = report.prediction.scan if report else study.series.order_by("created_at", "id").first()
    target = (series.get_absolute_url() if series else study.patient.get_absolute_url()) + "#reading"
    form = AddendumForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(str(m) for errors in form.errors.values() for m in errors))
        return redirect(target)
    return _act(
        request,
        target,
        lambda: services.addendum_add(
            study=study, author=selectors.signed_in(request.user), text=form.cleaned_data["text"]
        ),
        "Your addendum is added to the report.",
    )


@login_required
@require_POST
def prediction_rerun(request: HttpRequest, pk: int) -> HttpResponse:
    prediction = selectors.prediction_get(request.user, pk)
    return _act(
        request,
        prediction,
        lambda: services.prediction_rerun(
            prediction=prediction, requested_by=selectors.signed_in(request.user)
        ),
        "The prediction is queued again.",
    )


@login_required
@require_GET
def prediction_status(request: HttpRequest) -> JsonResponse:
    """States of the given predictions, for the pages' live updates."""
    ids = [int(i) for i in request.GET.get("ids", "").split(",") if re.fullmatch(ID_REGEX, i.strip())][:100]
    found = list(selectors.predictions_status(request.user, ids))
    for prediction in found:  # a state and a label are part of the record: each poll is a read
        trail.read(prediction, object_type="prediction_status")
    return JsonResponse({"predictions": {str(p.pk): {"status": p.status, "label": p.label} for p in found}})


@login_required
@require_GET
def slice_image(request: HttpRequest, pk: int) -> FileResponse | JsonResponse:
    return slice_image_response(selectors.slice_get(request.user, pk))


@login_required
@require_GET
def slice_hounsfield(request: HttpRequest, pk: int) -> FileResponse | JsonResponse:
    return slice_hounsfield_response(selectors.slice_get(request.user, pk))


@login_required
@require_GET
def prediction_sr(request: HttpRequest, pk: int) -> FileResponse | JsonResponse:
    """The prediction's DICOM Structured Report (DICOM studies only)."""
    prediction = selectors.prediction_get(request.user, pk)
    return structured_report_response(prediction)


@login_required
@require_GET
def slice_thumbnail(request: HttpRequest, pk: int) -> FileResponse:
    return slice_thumbnail_response(selectors.slice_get(request.user, pk))


@login_required
@require_GET
def slice_result_heatmap(request: HttpRequest, pk: int) -> FileResponse:
    return heatmap_response(selectors.slice_result_get(request.user, pk))


@login_required
@require_GET
def agreement(request: HttpRequest) -> HttpResponse:
    """How often reviewers agreed with the AI, per model version: administrators only."""
    if not request.user.is_staff:
        raise PermissionDenied("Only administrators see the agreement figures.")
    return render(
        request,
        "cases/agreement.html",
        {"versions": agreement_by_model_version(), "readers": reader_agreement(), "classes": CLASS_NAMES},
    )
