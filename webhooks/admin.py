"""Admin: the allow-list, endpoints (the secret shown once, when made), the events sent and the
delivery log (attempts with status codes and latency), with a manual redelivery."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from audit.admin import AuditedModelAdmin, RecordAdmin

from . import hosts, services
from .models import (
    AllowedWebhookHost,
    EventType,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from .signing import secret_generate


@admin.register(AllowedWebhookHost)
class AllowedWebhookHostAdmin(AuditedModelAdmin):
    list_display = ["pattern", "allow_private", "description", "created_at"]
    list_filter = ["allow_private"]
    search_fields = ["pattern", "description"]


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(label="URL", max_length=500, assume_scheme="https")
    events = forms.MultipleChoiceField(
        choices=EventType.choices, widget=forms.CheckboxSelectMultiple, help_text="what is sent here"
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["team", "url", "description", "events", "enabled"]

    def clean_url(self) -> str:
        url: str = self.cleaned_data["url"]
        try:
            hosts.registration_check(url)
        except hosts.HostRefused as refused:
            raise forms.ValidationError(str(refused)) from None
        return url

    def clean_events(self) -> list[str]:
        return services.events_clean(self.cleaned_data["events"])


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(AuditedModelAdmin):
    form = WebhookEndpointForm
    list_display = [
        "url",
        "team",
        "enabled",
        "event_list",
        "consecutive_failures",
        "disabled_reason",
        "delivery_log",
        "created_at",
    ]
    list_filter = ["enabled", "team"]
    search_fields = ["url", "description"]
    readonly_fields = ["disabled_reason", "disabled_at", "consecutive_failures", "created_by", "created_at"]
    actions = ["enable"]

    @admin.display(description="Events")
    def event_list(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.events or [])

    @admin.display(description="Deliveries")
    def delivery_log(self, obj: WebhookEndpoint) -> str:
        url = reverse("admin:webhooks_webhookdelivery_changelist") + f"?endpoint__id__exact={obj.pk}"
        return format_html('<a href="{}">log</a>', url)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        disabled = list(WebhookEndpoint.objects.filter(enabled=False).exclude(disabled_reason=""))
        for endpoint in disabled:
            self.message_user(
                request,
                f"{endpoint.url} ({endpoint.team}) is disabled: {endpoint.disabled_reason}",
                messages.WARNING,
            )
        return super().changelist_view(request, extra_context)

    def save_model(self, request: HttpRequest, obj: Any, form: forms.ModelForm, change: bool) -> None:
        secret = ""
        if not change:
            secret = obj.secret = secret_generate()
            obj.created_by = request.user
        if change and "enabled" in form.changed_data and obj.enabled:
            services.endpoint_failures_clear(obj)
        super().save_model(request, obj, form, change)
        if secret:
            self.message_user(
                request,
                f"The signing secret of {obj.url} is {secret} — copy it now: it is not shown again.",
                messages.WARNING,
            )

    @admin.action(description="Enable again (waiting deliveries are sent)", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        count = 0
        for endpoint in queryset.filter(enabled=False):
            services.endpoint_enable(endpoint=endpoint)
            count += 1
        self.message_user(request, f"{count} endpoint(s) enabled.")


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    fields = ["at", "status_code", "latency_ms", "error"]
    readonly_fields = ["at", "status_code", "latency_ms", "error"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(RecordAdmin):
    list_display = [
        "event_uid",
        "event_type",
        "endpoint",
        "state",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "delivered_at",
        "last_error",
    ]
    list_filter = ["state", "event__type", "endpoint"]
    search_fields = ["event__event_id", "endpoint__url"]
    list_select_related = ["event", "endpoint__team"]
    inlines = [WebhookAttemptInline]
    actions = ["redeliver"]

    @admin.display(description="Event id", ordering="event__event_id")
    def event_uid(self, obj: WebhookDelivery) -> str:
        return obj.event.event_id

    @admin.display(description="Type", ordering="event__type")
    def event_type(self, obj: WebhookDelivery) -> str:
        return obj.event.type

    @admin.action(description="Deliver again", permissions=["view"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        count = 0
        for delivery in queryset.select_related("endpoint"):
            services.delivery_redeliver(delivery=delivery)
            count += 1
            if not delivery.endpoint.enabled:
                self.message_user(
                    request,
                    f"{delivery.endpoint.url} is disabled: its deliveries wait until it is enabled.",
                    messages.WARNING,
                )
        self.message_user(request, f"{count} deliver(ies) queued again.")


@admin.register(WebhookAttempt)
class WebhookAttemptAdmin(RecordAdmin):
    """The log: every request, per endpoint."""

    list_display = ["at", "endpoint", "event", "status_code", "latency_ms", "error"]
    list_filter = ["delivery__endpoint", "status_code"]
    search_fields = ["delivery__event__event_id"]
    list_select_related = ["delivery__endpoint__team", "delivery__event"]
    date_hierarchy = "at"

    @admin.display(description="Endpoint", ordering="delivery__endpoint")
    def endpoint(self, obj: WebhookAttempt) -> WebhookEndpoint:
        return obj.delivery.endpoint

    @admin.display(description="Event")
    def event(self, obj: WebhookAttempt) -> WebhookEvent:
        return obj.delivery.event


@admin.register(WebhookEvent)
class WebhookEventAdmin(RecordAdmin):
    list_display = ["event_id", "type", "team", "created_at"]
    list_filter = ["type", "team"]
    search_fields = ["event_id"]
    fields = ["event_id", "type", "team", "created_at", "body"]
    readonly_fields = ["event_id", "type", "team", "created_at", "body"]

    @admin.display(description="Payload")
    def body(self, obj: WebhookEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, sort_keys=True))
