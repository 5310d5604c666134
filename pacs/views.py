"""The unmatched list: series a PACS sent whose patient the portal could not be sure of, for a
clinician of the team to assign (by MRN) or register from the header."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from audit import trail
from cases import selectors
from cases.models import Patient

from .models import UnmatchedSeries
from .reading import DicomRefused
from .receiving import unmatched_resolve as resolve


def _waiting_for(user: selectors.Viewer):  # type: ignore[no-untyped-def]
    return UnmatchedSeries.objects.filter(team__in=selectors.teams_for(user)).select_related(
        "team", "patient", "scan", "resolved_by"
    )


@login_required
@require_GET
def unmatched_list(request: HttpRequest) -> HttpResponse:
    series = _waiting_for(request.user).order_by("resolved_at", "-created_at")[:200]
    trail.read_list("unmatched_series")
    # Which PACS sent it (its AE title) is the network's business: staff see it, clinicians the channel.
    return render(
        request, "pacs/unmatched_list.html", {"series": series, "show_sender": request.user.is_staff}
    )


@login_required
@require_POST
def unmatched_resolve(request: HttpRequest, pk: int) -> HttpResponse:
    waiting = selectors.scoped_get(request.user, _waiting_for(request.user), pk)
    register = request.POST.get("register") == "1"
    patient = None
    if not register:
        mrn = request.POST.get("mrn", "").strip()[:64]
        patient = Patient.objects.filter(team=waiting.team, mrn=mrn).first()
        if patient is None:
            messages.error(request, f"No patient of {waiting.team} has the MRN “{mrn}”.")
            return redirect("pacs:unmatched_list")
    try:
        scans = resolve(waiting, user=selectors.signed_in(request.user), patient=patient, register=register)
    except ValidationError as refused:
        messages.error(request, " ".join(refused.messages))
        return redirect("pacs:unmatched_list")
    except DicomRefused as refused:
        messages.error(request, str(refused))
        return redirect("pacs:unmatched_list")
    messages.success(request, f"The series is stored under {scans[0].patient}; its prediction is queued.")
    return redirect(scans[0])
