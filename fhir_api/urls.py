"""FHIR R4 under /fhir/: metadata, and for each type its search and its read."""

from django.urls import path, re_path, register_converter

from .reads import RESOURCE_TYPES
from .views import MetadataView, ReadView, SearchView, UnknownView

app_name = "fhir"


class FhirIdConverter:
    """FHIR's id syntax; each type then reads its own ids (a malformed one is a 404)."""

    regex = r"[A-Za-z0-9\-.]{1,64}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(FhirIdConverter, "fhir_id")

urlpatterns = [
    path("metadata", MetadataView.as_view(), name="metadata"),
    *(path(name, SearchView.as_view(resource_type=name), name=f"{name}-search") for name in RESOURCE_TYPES),
    *(
        path(f"{name}/<fhir_id:logical_id>", ReadView.as_view(resource_type=name), name=f"{name}-read")
        for name in RESOURCE_TYPES
    ),
    re_path(r"^(?P<path>[\s\S]*)$", UnknownView.as_view(), name="unknown"),  # [\s\S]: newlines too
]
