"""Admin: which senders may send studies (per care team), what waits for a patient, and where each
result went back (with a manual redelivery)."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from audit import trail
from audit.admin import AuditedModelAdmin, RecordAdmin

from .models import DicomNode, ResultExport, UnmatchedSeries
from .services import result_export_destination, result_export_enqueue


@admin.register(DicomNode)
class DicomNodeAdmin(AuditedModelAdmin):
    list_display = ["ae_title", "addresses", "team", "enabled", "uses_tls", "description", "created_at"]
    list_filter = ["enabled", "team"]
    search_fields = ["ae_title", "addresses", "description"]

    @admin.display(boolean=True, description="TLS certificate")
    def uses_tls(self, node: DicomNode) -> bool:
        return bool(node.tls_certificate.strip())


@admin.register(UnmatchedSeries)
class UnmatchedSeriesAdmin(RecordAdmin):
    """Clinicians resolve these in the portal (/dicom/unmatched/); admin shows them."""

    list_display = [
        "created_at",
        "team",
        "reason",
        "detail",
        "received_via",
        "sender",
        "dicom_patient_id",
        "resolved_at",
    ]
    list_filter = ["reason", "received_via", "team", ("resolved_at", admin.EmptyFieldListFilter)]
    search_fields = ["dicom_patient_id", "series_instance_uid", "sender", "detail"]


@admin.register(ResultExport)
class ResultExportAdmin(RecordAdmin):
    list_display = ["prediction", "state", "attempts", "destination", "delivered_at", "last_error"]
    list_filter = ["state"]
    search_fields = ["sop_instance_uid", "destination"]
    actions = ["redeliver"]

    @admin.action(description="Deliver again to the configured PACS")
    def redeliver(self, request: HttpRequest, queryset: QuerySet[ResultExport]) -> None:
        if not result_export_destination():
            self.message_user(
                request, "No PACS destination is configured (PACS_STOW_URL or PACS_CSTORE).", messages.ERROR
            )
            return
        for export in queryset.select_related("prediction__scan"):
            result_export_enqueue(export.prediction)
            trail.record_object(trail.Action.CHANGE, export, detail="delivery to the PACS requested again")
        self.message_user(request, f"{queryset.count()} report(s) queued for delivery.")
