"""`/api/v1/webhooks/`: endpoints for administrators (staff with the model's permissions), all
care teams. The secret is in the answer to POST only."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from rest_framework import generics, permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from cases.models import CareTeam

from . import hosts, services
from .models import EventType, WebhookEndpoint

PERMISSION_FOR_METHOD = {
    "GET": "view",
    "HEAD": "view",
    "OPTIONS": "view",
    "POST": "add",
    "PUT": "change",
    "PATCH": "change",
    "DELETE": "delete",
}


class CanManageWebhooks(permissions.BasePermission):
    """Staff with the permission for what they ask, as in Django admin."""

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        needed = PERMISSION_FOR_METHOD.get(request.method, "change")
        return bool(user and user.is_staff and user.has_perm(f"webhooks.{needed}_webhookendpoint"))


class WebhookEndpointSerializer(serializers.ModelSerializer):
    team = serializers.PrimaryKeyRelatedField(queryset=CareTeam.objects.all())
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.choices), allow_empty=False
    )

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "team",
            "url",
            "events",
            "description",
            "enabled",
            "disabled_reason",
            "disabled_at",
            "consecutive_failures",
            "created_by",
            "created_at",
        ]
        read_only_fields = [
            "disabled_reason",
            "disabled_at",
            "consecutive_failures",
            "created_by",
            "created_at",
        ]

    def validate_url(self, value: str) -> str:
        try:
            hosts.registration_check(value)
        except hosts.HostRefused as refused:
            raise serializers.ValidationError(str(refused)) from None
        return value


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(read_only=True, help_text="shown this once: keep it")

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]


class WebhookEndpointList(generics.ListCreateAPIView):
    """Every care team's webhook endpoints; POST registers one and answers its secret, once."""

    permission_classes = [CanManageWebhooks]
    serializer_class = WebhookEndpointSerializer
    queryset = WebhookEndpoint.objects.select_related("team").order_by("id")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        with transaction.atomic():
            endpoint, secret = services.endpoint_create(created_by=request.user, **form.validated_data)
        endpoint.secret = secret
        answer = WebhookEndpointCreatedSerializer(endpoint, context=self.get_serializer_context())
        return Response(answer.data, status=status.HTTP_201_CREATED)


class WebhookEndpointDetail(generics.RetrieveUpdateDestroyAPIView):
    """One endpoint: PATCH changes it (enabled: true enables it again), DELETE removes it with
    its delivery log."""

    permission_classes = [CanManageWebhooks]
    serializer_class = WebhookEndpointSerializer
    queryset = WebhookEndpoint.objects.select_related("team")
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def perform_update(self, serializer: Any) -> None:
        with transaction.atomic():
            serializer.instance = services.endpoint_update(
                endpoint=serializer.instance, **serializer.validated_data
            )

    def perform_destroy(self, instance: WebhookEndpoint) -> None:
        with transaction.atomic():
            services.endpoint_delete(endpoint=instance)
