"""The DICOM C-STORE receiver (an SCP, run by `manage.py dicom_receiver`): PACS and routers whose
calling AE title an admin allowed for a care team send CT series here. Each association's
instances are collected and, once it is released, read and stored as one delivery (a study that
breaks off halfway is not stored at all)."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from audit import trail
from cases.models import Scan

from .models import DicomNode
from .reading import DicomRefused
from .receiving import studies_receive

logger = logging.getLogger(__name__)

NOT_AUTHORISED = 0x0124  # PS3.7 C.4.2: "Refused: Not Authorized"
OUT_OF_RESOURCES = 0xA700
NOBODY = "NO-SENDER"  # require_calling_aet may not be empty (that would mean anyone)


class Receiver:
    """One AE serving C-ECHO and C-STORE of CT images; deliveries are stored one at a time."""

    def __init__(self) -> None:
        self.ae = AE(ae_title=settings.DICOM_AE_TITLE)
        self.ae.require_called_aet = True
        self.ae.add_supported_context(Verification)
        self.ae.add_supported_context(CTImageStorage, ALL_TRANSFER_SYNTAXES)  # non-CT is not negotiated
        self.ae.maximum_pdu_size = 0
        self.received: dict[int, list[tuple[str, bytes]]] = {}
        self.budget: dict[int, int] = {}
        self.lock = threading.Lock()
        self.storing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dicom-store")

    def handlers(self) -> list[Any]:
        return [
            (evt.EVT_CONN_OPEN, self.allowed_senders),
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_RELEASED, self.on_released),
            (evt.EVT_ABORTED, self.on_aborted),
        ]

    def serve(self, *, block: bool = True) -> Any:
        address = (settings.DICOM_HOST, settings.DICOM_PORT)
        logger.info("DICOM receiver %s listening on %s:%s", settings.DICOM_AE_TITLE, *address)
        return self.ae.start_server(address, block=block, evt_handlers=self.handlers())

    def allowed_senders(self, event: Any) -> None:
        """Re-read the allow-list for every connection: an admin's change applies at once."""
        try:
            titles = list(DicomNode.objects.filter(enabled=True).values_list("ae_title", flat=True))
        finally:
            close_old_connections()
        self.ae.require_calling_aet = titles or [NOBODY]

    def on_store(self, event: Any) -> int:
        key = id(event.assoc)
        data = event.encoded_dataset()
        with self.lock:
            used = self.budget.get(key, 0) + len(data)
            files = self.received.setdefault(key, [])
            if used > settings.DICOM_MAX_SERIES_BYTES or len(files) >= settings.UPLOAD_MAX_FILES:
                return OUT_OF_RESOURCES
            self.budget[key] = used
            files.append((f"instance {len(files) + 1}", data))
        return 0x0000

    def on_aborted(self, event: Any) -> None:
        with self.lock:
            dropped = self.received.pop(id(event.assoc), [])
            self.budget.pop(id(event.assoc), None)
        if dropped:
            logger.warning(
                "Association from %s aborted: %d instance(s) not stored", _caller(event), len(dropped)
            )

    def on_released(self, event: Any) -> None:
        with self.lock:
            files = self.received.pop(id(event.assoc), [])
            self.budget.pop(id(event.assoc), None)
        if files:
            self.storing.submit(deliver, _caller(event), files)


def _caller(event: Any) -> str:
    return str(event.assoc.requestor.ae_title).strip()


def deliver(sender: str, files: list[tuple[str, bytes]]) -> None:
    """Store one association's instances for the sender's care team (its own thread; errors are
    logged and recorded, never raised into the network loop)."""
    try:
        node = DicomNode.objects.select_related("team").filter(ae_title=sender, enabled=True).first()
        if node is None:
            logger.warning("C-STORE from %s dropped: not an allowed sender", sender)
            return
        received = studies_receive(team=node.team, files=files, via=Scan.Received.CSTORE, sender=sender)
        logger.info(
            "C-STORE from %s: %d scan(s) stored, %d series waiting for a patient",
            sender,
            len(received.scans),
            len(received.waiting),
        )
    except DicomRefused as refused:
        logger.warning("C-STORE from %s refused: %s", sender, refused)
        trail.record(
            trail.Action.UPLOAD,
            object_type="dicom_delivery",
            outcome=trail.Outcome.REFUSED,
            detail=f"C-STORE from {sender}: {refused}"[:500],
        )
    except Exception:
        logger.exception("C-STORE from %s could not be stored", sender)
    finally:
        close_old_connections()
