from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from pacs.receiver import Receiver


class Command(BaseCommand):
    help = (
        "Run the DICOM C-STORE receiver (AE title DICOM_AE_TITLE on DICOM_HOST:DICOM_PORT; DICOM TLS "
        "with DICOM_TLS_CERT and DICOM_TLS_KEY)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        receiver = Receiver()  # with TLS, a wrong certificate or key stops it here
        self.stdout.write(
            f"DICOM receiver {settings.DICOM_AE_TITLE} on {settings.DICOM_HOST}:{settings.DICOM_PORT}"
            + (" (DICOM TLS)" if receiver.tls else "")
        )
        try:
            receiver.serve(block=True)
        finally:  # a stop (Ctrl-C, SIGTERM) lets the deliveries in hand finish storing
            receiver.storing.shutdown(wait=True)
