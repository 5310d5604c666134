"""Where a FHIR resource lives: for Bundles here, and for anyone who links to one (webhooks)."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse
from rest_framework.request import Request


def resource_path(resource_type: str, logical_id: str) -> str:
    """`/fhir/{type}/{id}`; NoReverseMatch for a type this server does not serve or a malformed id."""
    return reverse(f"fhir:{resource_type}-read", kwargs={"logical_id": logical_id})


def resource_url(request_or_none: HttpRequest | Request | None, resource_type: str, logical_id: str) -> str:
    """The resource's absolute URL when a request is given (its scheme and host), else its path."""
    path = resource_path(resource_type, logical_id)
    return request_or_none.build_absolute_uri(path) if request_or_none is not None else path


def reference(resource_type: str, logical_id: object) -> str:
    """A relative literal reference, as resources refer to each other: `Patient/12`."""
    return f"{resource_type}/{logical_id}"
