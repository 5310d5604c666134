"""Helpers for the credential attacks: a token for a user, and what the API answers it."""

from django.urls import reverse
from knox.models import AuthToken
from rest_framework.test import APIClient


def token_for(user) -> str:
    _, token = AuthToken.objects.create(user)
    return token


def answers(token: str) -> int:
    """What the API answers a request carrying this token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client.get(reverse("api:patient-list")).status_code
