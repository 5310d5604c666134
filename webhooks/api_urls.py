"""Included by cases/api/urls.py under /api/v1/webhooks/ (names in the `api` namespace)."""

from django.urls import path

from cases.urls_converters import IdConverter  # noqa: F401  (registers <id:...>)

from . import api

urlpatterns = [
    path("", api.WebhookEndpointList.as_view(), name="webhook-list"),
    path("<id:pk>/", api.WebhookEndpointDetail.as_view(), name="webhook-detail"),
]
