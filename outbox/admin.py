from django.contrib import admin

from audit.admin import RecordAdmin

from .models import OutboxEvent


@admin.register(OutboxEvent)
class OutboxEventAdmin(RecordAdmin):
    """Read-only: an event still waiting, and why (`last_error` names the failing subscriber)."""

    list_display = ["id", "topic", "subject_type", "subject_id", "created_at", "dispatched_at", "attempts"]
    list_filter = ["topic", ("dispatched_at", admin.EmptyFieldListFilter)]
    search_fields = ["topic", "subject_type", "last_error"]
    readonly_fields = [field.name for field in OutboxEvent._meta.fields]
