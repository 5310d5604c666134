from django.apps import AppConfig


class PacsConfig(AppConfig):
    name = "pacs"
    verbose_name = "DICOM and PACS"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # A finished prediction of a DICOM series goes back to the PACS as an SR: heard from the
        # outbox, so the clinical core never imports pacs.
        from cases.events import PREDICTION_NOT_ASSESSABLE, PREDICTION_SUCCEEDED
        from outbox import subscribe

        from .services import result_export_receive

        for topic in (PREDICTION_SUCCEEDED, PREDICTION_NOT_ASSESSABLE):
            subscribe(topic, result_export_receive, name="pacs.result_export")
