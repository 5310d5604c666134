from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from audit import trail
from audit.admin import AuditedModelAdmin

from .models import ModelVersion
from .services import model_version_activate


@admin.register(ModelVersion)
class ModelVersionAdmin(AuditedModelAdmin):
    list_display = ("name", "is_active", "balanced_accuracy_display", "created_at")
    list_filter = ("is_active", "created_at")
    search_fields = ("name", "sha256")
    # What a version runs is fixed at registration: its folder and hashes cannot be repointed.
    readonly_fields = ("weights_dir", "sha256", "files", "metrics", "created_at", "is_active")
    fields = ("name", "weights_dir", "sha256", "files", "is_active", "metrics", "created_at")
    ordering = ("-created_at",)
    actions = ["activate_selected"]

    @admin.display(description="balanced accuracy (test)")
    def balanced_accuracy_display(self, obj: ModelVersion) -> str:
        value = obj.balanced_accuracy
        return "–" if value is None else f"{value:.3f}"

    @admin.action(description="Activate selected model version")
    def activate_selected(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model version to activate.", level=messages.ERROR)
            return
        version = queryset.get()
        with transaction.atomic():
            model_version_activate(version=version)
            trail.record_object(trail.Action.CHANGE, version, changes={"is_active": [False, True]})
        self.message_user(
            request,
            f"Model version “{version.name}” is now active; new predictions use it.",
            level=messages.SUCCESS,
        )
