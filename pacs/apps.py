from django.apps import AppConfig


class PacsConfig(AppConfig):
    name = "pacs"
    verbose_name = "DICOM and PACS"
    default_auto_field = "django.db.models.BigAutoField"
