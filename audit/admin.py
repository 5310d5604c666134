"""The trail in Django admin (read-only, filtered, exported as CSV), and the base class that puts
admin reads and saves of other models into it."""

from __future__ import annotations

import csv
import json
from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import Model, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from . import trail
from .models import AuditEntry

# A password is never written into the trail, only that it changed.
SECRET_CHANGED = {"password": ["(hidden)", "(changed)"]}


class AuditedModelAdmin(admin.ModelAdmin):
    """Viewing an object in admin is a read; saving it records the fields changed, before and after."""

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Model | None = None,
    ) -> Any:
        if obj is not None and request.method == "GET":
            trail.read(obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm, change: bool) -> None:
        # Admin's change view runs in a transaction: the entry commits with the change.
        super().save_model(request, obj, form, change)
        changed = [name for name in form.changed_data if "password" not in name]
        before = {name: _comparable(form.initial.get(name)) for name in changed}
        after = {name: _comparable(form.cleaned_data.get(name)) for name in changed}
        changes = trail.changes_between(before, after)
        if len(changed) < len(form.changed_data):
            changes.update(SECRET_CHANGED)
        if changes or not change:
            trail.record_object(self.audit_action(change, changes), obj, changes=changes)

    def audit_action(self, change: bool, changes: dict[str, Any]) -> str:
        return trail.Action.CHANGE if change else trail.Action.CREATE

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        trail.record_object(trail.Action.DELETE, obj, detail=str(obj))
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        with transaction.atomic():  # entries only for deletions that happen
            for obj in queryset:
                trail.record_object(trail.Action.DELETE, obj, detail=str(obj))
            super().delete_queryset(request, queryset)


class RecordAdmin(AuditedModelAdmin):
    """A clinical record in admin: shown, never added, changed or deleted here (the portal's
    services do that, and retention is a command). Its lists are reads too."""

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        trail.read_list(f"{self.opts.model_name}_list", detail="searched" if request.GET.get("q") else "")
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _comparable(value: Any) -> Any:
    """Form values alike on both sides: a foreign key by id (initial holds the id, cleaned the
    object); many-to-many by name (both hold objects)."""
    if isinstance(value, Model):
        return value.pk
    if isinstance(value, QuerySet | list | tuple):
        return sorted(str(item) for item in value)
    return value


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = [
        "at",
        "username",
        "client_address",
        "channel",
        "action",
        "object_type",
        "object_id",
        "patient_link",
        "outcome",
    ]
    list_filter = ["action", "channel", "outcome", "object_type", ("user", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["username", "detail", "client_address"]
    date_hierarchy = "at"
    list_per_page = 100
    actions = ["export_csv"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Patient", ordering="patient_id")
    def patient_link(self, obj: AuditEntry) -> str:
        """Filters the trail to that patient: their access log."""
        if obj.patient_id is None:
            return "-"
        return format_html('<a href="{}">{}</a>', patient_log_url(obj.patient_id), obj.patient_id)

    @admin.action(description="Export selected entries as CSV", permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[AuditEntry]) -> StreamingHttpResponse:
        rows = queryset.order_by("at", "id").values_list(*AuditEntry.EXPORTED_FIELDS).iterator()
        writer = csv.writer(_Echo())
        response = StreamingHttpResponse(
            (writer.writerow(row) for row in _with_header(rows)), content_type="text/csv; charset=utf-8"
        )
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.csv"'
        return response


def patient_log_url(patient_id: int) -> str:
    """The trail filtered to one patient: who read or changed their record."""
    return reverse("admin:audit_auditentry_changelist") + f"?patient_id={patient_id}"


def _with_header(rows: Any) -> Any:
    yield AuditEntry.EXPORTED_FIELDS
    for row in rows:
        yield [_csv_cell(value) for value in row]


def _csv_cell(value: Any) -> Any:
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    # A cell starting with = + - @ is a formula to a spreadsheet: quote it as text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


class _Echo:
    def write(self, value: str) -> str:
        return value
