"""FHIR R4, read-only, at /fhir/: the clinical record as Patient, ImagingStudy, DiagnosticReport,
Observation and Device resources, with the API's token auth and team scoping (`cases.selectors`).

`builders` makes each resource a plain dict from the models, `reads` and `search` fetch for a user
(one resource by id; a search's page), `links` gives resource URLs to others (webhooks),
`capability` the CapabilityStatement, `views` the HTTP side."""
