"""Every URL pattern in the project needs a login, unless it is on the short public list."""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

PUBLIC = {
    "accounts/login/",  # where everyone starts
    "accounts/logout/",  # harmless when logged out
    "admin/login/",  # Django admin's own login and logout
    "admin/logout/",
    "healthz",  # load balancers; states only, no patient data
    "api/v1/auth/token/",  # exchanges credentials for a token
    "fhir/metadata",  # FHIR's CapabilityStatement: clients read it before they authenticate; no data
    "api/v1/^(?P<path>[\\s\\S]*)$",  # the API's own 404 for unknown paths: no data
}


def all_patterns(resolver: URLResolver, prefix: str = ""):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from all_patterns(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern)


def concrete(pattern: str) -> str:
    """A real path for a pattern: ids become 1, regex anchors go."""
    # Regex groups first: their names look like <converters> too.
    path = re.sub(r"\(\?P<format>[^)]*\)", "json", pattern)
    path = re.sub(r"\(\?P<\w+>[^)]*\)", "1", path)
    path = path.replace("<drf_format_suffix:format>", ".json")
    path = re.sub(r"<(?:\w+:)?\w+>", "1", path)
    path = path.replace("^", "").replace("$", "").replace("\\.", ".").replace("/?", "/")
    return "/" + path


PATTERNS = sorted(set(all_patterns(get_resolver())))


def test_the_enumeration_sees_the_whole_project():
    assert {"patients/<id:pk>/", "api/v1/auth/token/", "healthz", "admin/"} <= set(PATTERNS)
    api = [concrete(p) for p in PATTERNS if p.startswith("api/v1/") and p not in PUBLIC]
    assert "/api/v1/patients/1/history/" in api and "/api/v1/predictions/1/reviews/" in api
    assert not [path for path in api if "(" in path or "<" in path]  # every pattern became a real path


@pytest.mark.django_db
@pytest.mark.parametrize("pattern", PATTERNS)
def test_every_url_needs_login_unless_public(client, pattern):
    path = concrete(pattern)
    if pattern in PUBLIC:
        return
    response = client.get(path)
    if path == "/api/schema/":  # the contract: 401 for anonymous callers, like the API
        assert response.status_code == 401
        return
    if path.startswith(("/api/v1/", "/dicomweb/")):  # token-authenticated integrations
        assert response.status_code == 401, (pattern, path, response.status_code)
        assert set(response.json()) == {"detail", "errors"}
        return
    if path.startswith("/fhir/"):  # FHIR R4: token-authenticated, every error an OperationOutcome
        assert response.status_code == 401, (pattern, path, response.status_code)
        assert response.json()["resourceType"] == "OperationOutcome"
        return
    if path.startswith("/admin/"):
        assert response.status_code in (302, 404), pattern
        if response.status_code == 302:
            assert "/login/" in response["Location"]
        return
    if path.startswith("/static/"):
        return
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), (
        pattern,
        response.status_code,
    )
