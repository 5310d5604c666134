"""The CapabilityStatement at /fhir/metadata: what this server reads and searches."""

from __future__ import annotations

from . import builders
from .builders import Resource
from .reads import RESOURCE_TYPES
from .search import PARAMETERS

# When this statement last changed (FHIR asks for a date; it changes with the code, not the data).
PUBLISHED = "2026-11-27"

PARAMETER_TYPES = {
    "identifier": "token",
    "name": "string",
    "patient": "reference",
    "subject": "reference",
    "started": "date",
    "date": "date",
    "status": "token",
    "code": "token",
}
PARAMETER_DOCUMENTATION = {
    "identifier": "Patient: the MRN ([system|]value). ImagingStudy: the Study Instance UID "
    "(urn:dicom:uid|urn:oid:…) or the accession number.",
    "name": "A word of the patient's name starts with this text (:contains, :exact).",
    "patient": "The patient's id: 123 or Patient/123.",
    "subject": "The patient's id: 123 or Patient/123.",
    "started": "The study date, with the prefixes eq ne gt lt ge le.",
    "date": "The study date, with the prefixes eq ne gt lt ge le.",
    "status": "preliminary (the AI's result), final (signed), amended (a signed correction).",
    "code": f"{builders.CODE_SYSTEM}|malignancy-suspicion, probability-normal, probability-benign, "
    "probability-malignant.",
}
SECURITY = (
    "Every resource needs an API token (`Authorization: Token …`, from POST /api/v1/auth/token/) or "
    "a signed-in session; a user sees the patients of their care teams only, and anything else is a "
    "404. This statement is public."
)


def capability_statement(base_url: str) -> Resource:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": PUBLISHED,
        "publisher": "LungPortal",
        "kind": "instance",
        "software": {"name": "LungPortal"},
        "implementation": {"description": "LungPortal FHIR API (read-only)", "url": base_url},
        "fhirVersion": builders.FHIR_VERSION,
        "format": [builders.FHIR_JSON],
        "rest": [
            {
                "mode": "server",
                "security": {"cors": False, "description": SECURITY},
                "resource": [_resource(resource_type) for resource_type in RESOURCE_TYPES],
                "searchParam": [
                    {
                        "name": "_count",
                        "type": "number",
                        "documentation": "Page size (at most FHIR_MAX_PAGE_SIZE).",
                    },
                    {
                        "name": "_offset",
                        "type": "number",
                        "documentation": "Where the page starts; see Bundle.link.",
                    },
                ],
            }
        ],
    }


def _resource(resource_type: str) -> Resource:
    entry: Resource = {
        "type": resource_type,
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "versioning": "no-version",
        "readHistory": False,
        "updateCreate": False,
    }
    parameters = [
        {
            "name": name,
            "type": PARAMETER_TYPES[name],
            "documentation": PARAMETER_DOCUMENTATION[name],
        }
        for name in PARAMETERS[resource_type]
    ]
    if parameters:
        entry["searchParam"] = parameters
    return entry
