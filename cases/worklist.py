"""The reading worklist: a clinician's studies to read, unread first, the most suspicious on top.

One query for the page or the API: each scan carries its latest prediction's state and suspicion
and its study's reading state (unread, final, addended, amended) as annotations, so filters and
ordering run in the database. The same FilterSet validates the page's and the API's query
parameters."""

from __future__ import annotations

import django_filters
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.forms import DateInput

from . import selectors
from .models import Addendum, Prediction, Scan, Slice, current_report, disagreement

STATES = [
    ("queued", "Queued"),
    ("running", "Running"),
    ("succeeded", "Succeeded"),
    ("not_assessable", "Not assessable"),
    ("failed", "Failed"),
]
READINGS = [("unread", "Unread"), ("final", "Final"), ("addended", "Addended"), ("amended", "Amended")]


def worklist(user: selectors.Viewer) -> QuerySet[Scan]:
    """The viewer's scans in reading order: unread before read, then by suspicion (highest first;
    failed, pending and unassessable studies after the scored ones), then the newest study first.

    Each scan is judged by the prediction a clinician reads on its page: the newest succeeded
    one, else the newest of any state (a re-run in the queue does not hide a result). It is read
    when its study has a signed report (a rerun of the AI leaves it read): final, addended once
    text was added to it, amended once it was corrected; `disagreement` when a second opinion's
    label differs from the report's."""
    to_read = (
        Prediction.objects.filter(scan=OuterRef("pk"))
        .annotate(pending=Case(When(status="succeeded", then=Value(0)), default=Value(1)))
        .order_by("pending", "-created_at", "-id")
    )
    report = current_report(OuterRef("study_id"))
    addenda = Addendum.objects.filter(
        report__study=OuterRef("study_id"), report__kind="report", report__superseded_by__isnull=True
    )
    return (
        selectors.scans_for(user)
        .annotate(
            prediction_id=Subquery(to_read.values("id")[:1]),
            prediction_status=Subquery(to_read.values("status")[:1]),
            suspicion=Subquery(to_read.values("suspicion")[:1]),
            ai_label=Subquery(to_read.values("label")[:1]),
            finding=Subquery(to_read.values("finding")[:1]),
            not_assessable_slices=Subquery(to_read.values("not_assessable_slices")[:1]),
            # A subquery, not Count("slices"): an aggregate would GROUP BY every annotation, joining
            # each scan's slices first, and the paginator's COUNT(*) would compute them all too.
            slice_count=Subquery(
                Slice.objects.filter(scan=OuterRef("pk"))
                .order_by()
                .values("scan")
                .annotate(count=Count("pk"))
                .values("count"),
                output_field=IntegerField(),
            ),
        )
        .annotate(
            reading=Case(
                When(Exists(report.filter(supersedes__isnull=False)), then=Value("amended")),
                When(Exists(addenda), then=Value("addended")),
                When(Exists(report), then=Value("final")),
                default=Value("unread"),
            ),
            read_label=Subquery(report.values("label")[:1]),
            read_by=Subquery(report.values("reviewer__username")[:1]),
            read_at=Subquery(report.values("created_at")[:1]),
            disagreement=disagreement(OuterRef("study_id")),
            # No slice assessable: finished, but no suspicion and no label (older results have a label).
            state=Case(
                When(
                    prediction_status="succeeded",
                    suspicion__isnull=True,
                    ai_label="",
                    then=Value("not_assessable"),
                ),
                default=F("prediction_status"),
            ),
        )
        .annotate(
            # Read (final, addended or amended) is "the study has a report": one lookup per scan to
            # sort by, where testing `reading` would run each of its EXISTS for every scan of the team.
            unread_first=Case(
                When(Exists(report), then=Value(1)), default=Value(0), output_field=IntegerField()
            ),
        )
        .order_by("unread_first", F("suspicion").desc(nulls_last=True), "-study_date", "-id")
    )


class WorklistFilter(django_filters.FilterSet):
    """Filters of the worklist page and of GET /api/v1/worklist/."""

    state = django_filters.ChoiceFilter(choices=STATES, label="Status", empty_label="Any status")
    reading = django_filters.ChoiceFilter(choices=READINGS, label="Reading", empty_label="Any reading")
    team = django_filters.ModelChoiceFilter(
        field_name="patient__team",
        queryset=lambda request: selectors.teams_for(request.user),
        label="Care team",
        empty_label="All my teams",
    )
    study_from = django_filters.DateFilter(
        field_name="study_date",
        lookup_expr="gte",
        label="Study from",
        widget=DateInput(attrs={"type": "date"}),
    )
    study_to = django_filters.DateFilter(
        field_name="study_date", lookup_expr="lte", label="Study to", widget=DateInput(attrs={"type": "date"})
    )
    q = django_filters.CharFilter(
        method="search", label="Patient", help_text="MRN or name contains this text."
    )

    class Meta:
        model = Scan
        fields: list[str] = []

    def search(self, queryset: QuerySet[Scan], name: str, value: str) -> QuerySet[Scan]:
        value = value.replace("\x00", "")[:100]
        return queryset.filter(Q(patient__mrn__icontains=value) | Q(patient__name__icontains=value))
