"""`GET /api/v1/audit/`: the trail for administrators (is_staff), filtered and paginated."""

from __future__ import annotations

from typing import Any

import django_filters
from rest_framework import generics, permissions, serializers

from .models import AuditEntry


class AuditEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = AuditEntry.EXPORTED_FIELDS


class AuditEntryFilter(django_filters.FilterSet):
    patient = django_filters.NumberFilter(field_name="patient_id", help_text="A patient's id.")
    user = django_filters.NumberFilter(field_name="user_id", help_text="A user's id.")
    username = django_filters.CharFilter(field_name="username", lookup_expr="iexact")
    action = django_filters.MultipleChoiceFilter(choices=AuditEntry.Action.choices)
    channel = django_filters.ChoiceFilter(choices=AuditEntry.Channel.choices)
    outcome = django_filters.ChoiceFilter(choices=AuditEntry.Outcome.choices)
    object_type = django_filters.CharFilter(field_name="object_type")
    object_id = django_filters.NumberFilter(field_name="object_id")
    since = django_filters.IsoDateTimeFilter(
        field_name="at", lookup_expr="gte", help_text="ISO 8601, inclusive."
    )
    until = django_filters.IsoDateTimeFilter(
        field_name="at", lookup_expr="lt", help_text="ISO 8601, exclusive."
    )

    class Meta:
        model = AuditEntry
        fields: list[str] = []


class CanReadAuditTrail(permissions.BasePermission):
    """Staff with the permission to view audit entries, as in Django admin."""

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_staff and user.has_perm("audit.view_auditentry"))


class AuditEntryList(generics.ListAPIView):
    """Who read or changed what, newest first. Administrators only; entries are never changed."""

    permission_classes = [CanReadAuditTrail]
    serializer_class = AuditEntrySerializer
    filterset_class = AuditEntryFilter
    queryset = AuditEntry.objects.order_by("-at", "-id")
