"""Admin: care teams and users are managed here; the clinical record is shown, never edited or
deleted (corrections go through the portal's services, which the audit trail records)."""

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Model
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html

from audit import trail
from audit.admin import SECRET_CHANGED, AuditedModelAdmin, RecordAdmin, patient_log_url

from .models import (
    Addendum,
    CareTeam,
    Patient,
    Prediction,
    PredictionRun,
    Review,
    Scan,
    Slice,
    SliceResult,
    Study,
)


def _link(obj: Model | None, label: str | None = None) -> str:
    if obj is None:
        return "-"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label or obj)


class ReadOnlyInline(admin.TabularInline):
    """Rows of the record shown under their parent: nothing added, changed or deleted here."""

    extra = 0
    can_delete = False

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


admin.site.unregister(User)


@admin.register(User)
class AuditedUserAdmin(AuditedModelAdmin, UserAdmin):
    """Users are deactivated, never deleted: their name stays on everything they did."""

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        with transaction.atomic():
            response = super().user_change_password(request, id, form_url)
            if request.method == "POST" and response.status_code == 302:  # the form was saved
                trail.record(
                    trail.Action.CHANGE, object_type="user", object_id=int(id), changes=SECRET_CHANGED
                )
        return response


@admin.register(CareTeam)
class CareTeamAdmin(AuditedModelAdmin):
    list_display = ["name", "member_count"]
    search_fields = ["name", "members__username"]
    filter_horizontal = ["members"]

    def audit_action(self, change: bool, changes: dict[str, Any]) -> str:
        """Adding or removing members moves clinicians between teams (and their patients' access)."""
        if change and "members" in changes:
            return trail.Action.TEAM_MOVE
        return super().audit_action(change, changes)

    @admin.display(description="Members")
    def member_count(self, obj: CareTeam) -> int:
        return obj.members.count()


class ScanInline(ReadOnlyInline):
    model = Scan
    readonly_fields = ("scan_link", "study_date", "note", "created_at")
    show_change_link = True

    @admin.display(description="Scan")
    def scan_link(self, obj: Scan) -> str:
        return _link(obj)


@admin.register(Patient)
class PatientAdmin(RecordAdmin):
    list_display = ["mrn", "name", "team", "birth_date", "sex", "created_at"]
    list_filter = ["team", "sex"]
    search_fields = ["mrn", "name"]
    date_hierarchy = "created_at"
    # Demographics are corrected in the portal, where the change is validated and audited.
    readonly_fields = [
        "team",
        "mrn",
        "name",
        "birth_date",
        "sex",
        "created_by",
        "created_at",
        "updated_at",
        "access_log",
    ]
    inlines = [ScanInline]

    @admin.display(description="Access log")
    def access_log(self, obj: Patient) -> str:
        return format_html('<a href="{}">Who read or changed this record</a>', patient_log_url(obj.pk))


class SliceInline(ReadOnlyInline):
    model = Slice
    readonly_fields = (
        "position",
        "original_name",
        "content_type",
        "width",
        "height",
        "size_bytes",
        "sha256",
        "source_sha256",
    )


class PredictionInline(ReadOnlyInline):
    model = Prediction
    readonly_fields = ("prediction_link", "status", "label", "model_version", "created_at")

    @admin.display(description="Prediction")
    def prediction_link(self, obj: Prediction) -> str:
        return _link(obj)


class SeriesInline(ReadOnlyInline):
    model = Scan
    verbose_name_plural = "series"
    readonly_fields = fields = ("series_instance_uid", "series_number", "series_description", "received_via")
    show_change_link = True


@admin.register(Study)
class StudyAdmin(RecordAdmin):
    list_display = ["__str__", "patient_link", "study_date", "accession_number", "priority", "created_at"]
    list_filter = ["priority", "study_date", "patient__team"]
    search_fields = ["patient__mrn", "patient__name", "accession_number", "study_instance_uid"]
    readonly_fields = fields = (
        "patient_link",
        "study_instance_uid",
        "accession_number",
        "study_date",
        "study_time",
        "description",
        "priority",
        "indication",
        "created_at",
    )
    inlines = [SeriesInline]
    list_select_related = ["patient"]

    @admin.display(description="Patient")
    def patient_link(self, obj: Study) -> str:
        return _link(obj.patient)


@admin.register(Scan)
class ScanAdmin(RecordAdmin):
    list_display = ["__str__", "patient_link", "study_date", "slice_count", "created_at"]
    list_filter = ["study_date", "patient__team"]
    search_fields = ["patient__mrn", "patient__name", "note"]
    readonly_fields = fields = ("patient_link", "study_date", "note", "uploaded_by", "created_at")
    inlines = [SliceInline, PredictionInline]
    list_select_related = ["patient"]

    @admin.display(description="Patient")
    def patient_link(self, obj: Scan) -> str:
        return _link(obj.patient)

    @admin.display(description="Slices")
    def slice_count(self, obj: Scan) -> int:
        return obj.slices.count()


class SliceResultInline(ReadOnlyInline):
    model = SliceResult
    readonly_fields = ("slice", "assessable", "reason", "label", "p_normal", "p_benign", "p_malignant")


class PredictionRunInline(ReadOnlyInline):
    model = PredictionRun
    readonly_fields = (
        "status",
        "error",
        "attempts",
        "requested_by",
        "queued_at",
        "finished_at",
        "rerun_by",
        "rerun_at",
    )

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).select_related("requested_by", "rerun_by")


@admin.register(Prediction)
class PredictionAdmin(RecordAdmin):
    list_display = [
        "__str__",
        "scan_link",
        "patient_link",
        "status",
        "label",
        "model_version",
        "attempts",
        "created_at",
    ]
    list_filter = ["status", "label", "model_version", "scan__patient__team"]
    search_fields = ["scan__patient__mrn", "scan__patient__name", "error"]
    list_select_related = ["scan", "scan__patient", "model_version"]
    date_hierarchy = "created_at"
    # Model outputs are a record of what the CNN said: never edited by hand.
    readonly_fields = [
        "scan_link",
        "patient_link",
        "model_version",
        "status",
        "label",
        "p_normal",
        "p_benign",
        "p_malignant",
        "error",
        "attempts",
        "requested_by",
        "created_at",
        "queued_at",
        "started_at",
        "finished_at",
        "inference_seconds",
        "suspicion",
        "suspicious_slices",
        "not_assessable_slices",
        "finding",
        "weights_sha256",
        "task_id",
    ]
    exclude = ["scan"]
    inlines = [PredictionRunInline, SliceResultInline]

    @admin.display(description="Scan")
    def scan_link(self, obj: Prediction) -> str:
        return _link(obj.scan)

    @admin.display(description="Patient")
    def patient_link(self, obj: Prediction) -> str:
        return _link(obj.scan.patient)


class AddendumInline(ReadOnlyInline):
    model = Addendum
    readonly_fields = ("author", "text", "created_at")


@admin.register(Review)
class ReviewAdmin(RecordAdmin):
    list_display = [
        "__str__",
        "kind",
        "study_link",
        "prediction_link",
        "reviewer",
        "verdict",
        "label",
        "created_at",
    ]
    list_filter = ["kind", "verdict", "label"]
    search_fields = ["prediction__scan__patient__mrn", "reviewer__username", "comment"]
    readonly_fields = [
        "kind",
        "study_link",
        "prediction_link",
        "reviewer",
        "verdict",
        "label",
        "comment",
        "created_at",
        "supersedes",
        "superseded_by",
    ]
    exclude = ["prediction", "study"]
    list_select_related = ["prediction", "study", "reviewer", "superseded_by"]
    inlines = [AddendumInline]

    @admin.display(description="Prediction")
    def prediction_link(self, obj: Review) -> str:
        return _link(obj.prediction)

    @admin.display(description="Study")
    def study_link(self, obj: Review) -> str:
        return _link(obj.study)


@admin.register(Addendum)
class AddendumAdmin(RecordAdmin):
    """Append-only: shown, never added, changed or deleted here (`addendum_add` adds them)."""

    list_display = ["__str__", "report_link", "author", "created_at"]
    search_fields = ["report__study__patient__mrn", "author__username", "text"]
    readonly_fields = ["report_link", "author", "text", "created_at"]
    exclude = ["report"]
    list_select_related = ["report", "author"]

    @admin.display(description="Report")
    def report_link(self, obj: Addendum) -> str:
        return _link(obj.report)


@admin.register(Slice)
class SliceAdmin(RecordAdmin):
    list_display = ["__str__", "scan_link", "original_name", "content_type", "width", "height", "size_bytes"]
    list_filter = ["content_type"]
    search_fields = ["original_name", "sha256", "scan__patient__mrn"]
    readonly_fields = [
        "scan_link",
        "position",
        "image",
        "thumbnail",
        "original_name",
        "content_type",
        "sha256",
        "source_sha256",
        "width",
        "height",
        "size_bytes",
    ]
    exclude = ["scan"]
    list_select_related = ["scan"]

    @admin.display(description="Scan")
    def scan_link(self, obj: Slice) -> str:
        return _link(obj.scan)


@admin.register(SliceResult)
class SliceResultAdmin(RecordAdmin):
    list_display = ["__str__", "prediction_link", "label", "p_normal", "p_benign", "p_malignant"]
    list_filter = ["label"]
    search_fields = ["prediction__scan__patient__mrn"]
    readonly_fields = [
        "prediction_link",
        "slice",
        "assessable",
        "reason",
        "label",
        "p_normal",
        "p_benign",
        "p_malignant",
        "heatmap",
    ]
    exclude = ["prediction"]
    list_select_related = ["prediction", "slice"]

    @admin.display(description="Prediction")
    def prediction_link(self, obj: SliceResult) -> str:
        return _link(obj.prediction)


@admin.register(PredictionRun)
class PredictionRunAdmin(RecordAdmin):
    list_display = ["__str__", "status", "attempts", "requested_by", "rerun_by", "rerun_at"]
    list_select_related = ["requested_by", "rerun_by", "prediction__scan"]
    list_filter = ["status"]
    readonly_fields = fields = (
        "prediction",
        "status",
        "error",
        "attempts",
        "task_id",
        "requested_by",
        "queued_at",
        "started_at",
        "finished_at",
        "rerun_by",
        "rerun_at",
    )
