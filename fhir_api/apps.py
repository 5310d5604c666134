from django.apps import AppConfig


class FhirConfig(AppConfig):
    name = "fhir_api"
    verbose_name = "FHIR R4 (read-only)"
    default_auto_field = "django.db.models.BigAutoField"
