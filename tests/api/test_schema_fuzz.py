"""Property-based fuzzing of the OpenAPI contract against a live server: no 5xx, and every
response (status code, content type, body) matches the schema."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from knox.models import AuthToken
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.django_db(transaction=True)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _served_schema() -> dict:
    """The same document /api/schema/ serves (drf-spectacular, generated from the code)."""
    import json

    from drf_spectacular.generators import SchemaGenerator
    from rest_framework.renderers import JSONRenderer

    return json.loads(JSONRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


schema = schemathesis.openapi.from_dict(_served_schema())


@pytest.fixture
def token(alice, slice_result):  # a patient, a scan and results exist to be found
    return AuthToken.objects.create(alice)[1]


@schema.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_api_honours_its_schema(case, token, live_server):
    case.call_and_validate(
        base_url=live_server.url, headers={"Authorization": f"Token {token}"}, checks=CHECKS
    )
