import pytest
from knox.models import AuthToken
from rest_framework.test import APIClient

from audit.models import AuditEntry


@pytest.fixture
def api_as():
    """An API client holding a token of the given user."""

    def client_for(user) -> APIClient:
        client = APIClient()
        _, token = AuthToken.objects.create(user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        return client

    return client_for


def entries(**filters) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(**filters).order_by("id"))


def only_entry(**filters) -> AuditEntry:
    found = entries(**filters)
    assert len(found) == 1, found
    return found[0]
