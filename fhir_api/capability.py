"""The CapabilityStatement at /fhir/metadata: what this server reads and searches."""

from __future__ import annotations

from . import builders
from .builders import Resource
from .reads import RESOURCE_TYPES
from .search import INCLUDES, PARAMETERS, SORTS

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
    "Every resource needs an API token (`Authorization: Token …` or `Authorization: Bearer …`, from "
    "POST /api/v1/auth/token/) or a signed-in session; a user sees the patients of their care teams "
    "only, and anything else is a 404. Every read and search is audited per patient. This statement "
    "is public."
)
# Where meta.lastUpdated (and so _lastUpdated) comes from, per type.
LAST_UPDATED = (
    "meta.lastUpdated, with the prefixes eq ne gt lt ge le, to the year, month, day, minute, second "
    "or millisecond (no zone: the server's). Patient: the record's last change; ImagingStudy: the "
    "arrival of its latest series; DiagnosticReport: when it was issued (the AI's result finished, "
    "a reading signed); Observation: when the AI's result finished; Device: when the model version "
    "was registered."
)
COMMON_PARAMETERS = [
    {"name": "_id", "type": "token", "documentation": "Logical ids, separated by commas."},
    {"name": "_lastUpdated", "type": "date", "documentation": LAST_UPDATED},
    {
        "name": "_sort",
        "type": "special",
        "documentation": "Sort keys separated by commas, `-` for descending; each type's are in its "
        "documentation. Without it, each type's own order.",
    },
    {
        "name": "_summary",
        "type": "token",
        "documentation": "count: the total and no entries; false: as without it. true, text and "
        "data are not supported.",
    },
    {
        "name": "_total",
        "type": "token",
        "documentation": "none, estimate or accurate: the total is always accurate.",
    },
    {"name": "_count", "type": "number", "documentation": "Page size (at most FHIR_MAX_PAGE_SIZE)."},
    {"name": "_offset", "type": "number", "documentation": "Where the page starts; see Bundle.link."},
    {"name": "_format", "type": "token", "documentation": "json only; anything else is a 406."},
]
HANDLING = (
    "Unknown or unsupported parameters (names, modifiers, sort keys, _include values) are ignored "
    "and named in a Bundle entry with search.mode = outcome, and left out of the self link; with "
    "`Prefer: handling=strict` they are a 400 OperationOutcome. A malformed value is a 400 either way. "
    "FHIR JSON only: an Accept or _format asking for XML or another format alone is a 406."
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
                "documentation": HANDLING,
                "security": {"cors": False, "description": SECURITY},
                "resource": [_resource(resource_type) for resource_type in RESOURCE_TYPES],
                "searchParam": COMMON_PARAMETERS,
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
        "documentation": f"_sort by {', '.join(SORTS[resource_type])}.",
    }
    includes = [value for value in INCLUDES.get(resource_type, ()) if not value.endswith(":Patient")]
    if includes:
        entry["searchInclude"] = includes
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
