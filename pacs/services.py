"""Results back to the PACS: each finished prediction of a DICOM series becomes a structured report
(`pacs.structured_report`), kept downloadable and, when a destination is configured, delivered by
STOW-RS or C-STORE with retries and a state a person can see."""

from __future__ import annotations

import io
import logging
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from cases.models import Prediction

from .models import ResultExport
from .structured_report import structured_report

if TYPE_CHECKING:
    from outbox.models import OutboxEvent

logger = logging.getLogger(__name__)

NETWORK_TIMEOUT = 30  # seconds, per connection or reply; a PACS slower than this is retried later
SENDING_LOST_AFTER = timedelta(minutes=10)  # an attempt still "sending" after this: its worker died
SWEEP_GRACE = timedelta(minutes=2)  # overdue by this much: its own message is not coming
SWEEP_BATCH = 500


class DeliveryRetry(Exception):
    """The delivery failed and will be tried again; `attempts` have been made so far."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class DeliveryError(Exception):
    """Why one delivery attempt failed, in words a person can act on."""


def result_export_destination() -> str:
    """Where results go, as shown on the export: blank when no PACS is configured."""
    if settings.PACS_STOW_URL:
        return f"STOW-RS {settings.PACS_STOW_URL}"
    if settings.PACS_CSTORE:
        return f"C-STORE {settings.PACS_CSTORE}"
    return ""


def _exportable(prediction: Prediction) -> bool:
    return prediction.status == Prediction.Status.SUCCEEDED and prediction.scan.is_dicom


def _export_get_or_create(prediction: Prediction) -> tuple[ResultExport, bool]:
    # The UID is made once: a report sent again replaces itself at the PACS instead of doubling.
    return ResultExport.objects.get_or_create(
        prediction=prediction, defaults={"sop_instance_uid": generate_uid()}
    )


def result_export_enqueue(prediction: Prediction) -> ResultExport | None:
    """Record the SR of a succeeded prediction and, when a PACS is configured, send it there once
    the surrounding transaction commits. Predictions of uploaded images get none (None).

    Called by the outbox relay (`result_export_receive`) in the transaction that hands it the
    prediction's event, and by the admin's "send again".
    """
    if not _exportable(prediction):
        return None
    export, _ = _export_get_or_create(prediction)
    destination = result_export_destination()
    if not destination:
        return export  # downloadable from the API; nothing to send
    # A re-run prediction's report is sent again, from a fresh count of attempts; one being sent
    # right now is left to that delivery, which builds the report from the stored results.
    reset = (
        ResultExport.objects.filter(pk=export.pk)
        .exclude(state=ResultExport.State.SENDING)
        .update(
            destination=destination,
            state=ResultExport.State.PENDING,
            attempts=0,
            last_error="",
            delivered_at=None,
            next_attempt_at=timezone.now(),
        )
    )
    if not reset:
        return export
    export.refresh_from_db()
    export_id = export.pk
    # robust: a broker that is down must not undo the prediction's results.
    transaction.on_commit(lambda: _deliver_later(export_id), robust=True)
    return export


def result_export_receive(event: OutboxEvent) -> None:
    """The outbox's subscriber: a finished prediction's SR recorded (and sent once the relay's
    transaction commits), as `result_export_enqueue`. A prediction purged since, or run again and
    not finished yet, has nothing to export (the new run publishes its own event)."""
    prediction = Prediction.objects.select_related("scan").filter(pk=event.payload["prediction"]).first()
    if prediction is not None:
        result_export_enqueue(prediction)


def _deliver_later(export_id: int) -> None:
    from .tasks import result_export_deliver

    result_export_deliver.apply_async(args=[export_id], retry=False)


def result_export_report(prediction: Prediction) -> Dataset:
    """The SR dataset of a succeeded prediction of a DICOM series (its export row made if needed).

    Raises ValueError, naming why, for any other prediction.
    """
    if not _exportable(prediction):
        structured_report(prediction)  # raises, saying why
        raise ValueError(f"prediction {prediction.pk} has no structured report")
    export, _ = _export_get_or_create(prediction)
    return structured_report(prediction, sop_instance_uid=export.sop_instance_uid)


def result_export_bytes(prediction: Prediction) -> bytes:
    """The SR as a DICOM Part 10 file, for the API's download (application/dicom)."""
    buffer = io.BytesIO()
    result_export_report(prediction).save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def result_export_deliver(export_id: int) -> ResultExport | None:
    """Send one export to the configured PACS: pending → sending → delivered, or back to pending
    (DeliveryRetry raised) or failed after PACS_DELIVERY_MAX_ATTEMPTS attempts.

    Idempotent: an export that is delivered, failed or gone is left alone (None). An export left
    `sending` by a worker that died is claimed again; the attempt it was on counts.
    """
    # Attempts are counted as they start, so that a report that kills its worker still ends failed.
    # Claimed only when due: a duplicate message (a sweep's, a late retry's) finds nothing to do,
    # and an attempt in progress is due again only once presumed lost.
    now = timezone.now()
    claimed = ResultExport.objects.filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        pk=export_id,
        state__in=[ResultExport.State.PENDING, ResultExport.State.SENDING],
    ).update(
        state=ResultExport.State.SENDING,
        attempts=F("attempts") + 1,
        next_attempt_at=now + SENDING_LOST_AFTER,
    )
    if not claimed:
        return None
    export = ResultExport.objects.select_related("prediction__scan", "prediction__model_version").get(
        pk=export_id
    )
    destination = result_export_destination()
    try:
        if not destination:
            raise DeliveryError("no PACS is configured (set PACS_STOW_URL or PACS_CSTORE)")
        report = structured_report(export.prediction, sop_instance_uid=export.sop_instance_uid)
        if settings.PACS_STOW_URL:
            _stow(report)
        else:
            _cstore(report)
    except (DeliveryError, ValueError) as exc:
        return _attempt_failed(export, destination, str(exc))
    except Exception as exc:  # anything else is a bug, but the export must still say it failed
        logger.exception("Delivering result export %s failed unexpectedly", export_id)
        return _attempt_failed(export, destination, f"unexpected error: {type(exc).__name__}: {exc}")
    ResultExport.objects.filter(pk=export_id, state=ResultExport.State.SENDING).update(
        state=ResultExport.State.DELIVERED,
        destination=destination,
        last_error="",
        delivered_at=timezone.now(),
        next_attempt_at=None,
    )
    export.refresh_from_db()
    return export


def result_exports_sweep() -> int:
    """Send again every export whose next attempt is overdue (beat, every minute): one whose
    broker message was lost, or whose worker died while sending; how many were sent. The grace
    leaves a retry that is merely late to its own message (a delivery twice is harmless: the report
    keeps its SOP Instance UID, so the PACS replaces it)."""
    overdue = ResultExport.objects.filter(
        state__in=[ResultExport.State.PENDING, ResultExport.State.SENDING],
        next_attempt_at__lte=timezone.now() - SWEEP_GRACE,
    )
    ids = list(overdue.order_by("next_attempt_at").values_list("pk", flat=True)[:SWEEP_BATCH])
    # Due now, not overdue: claimable by the message sent here, and swept again only if it is lost.
    ResultExport.objects.filter(pk__in=ids).update(next_attempt_at=timezone.now())
    for export_id in ids:
        _deliver_later(export_id)
    return len(ids)


def _attempt_failed(export: ResultExport, destination: str, message: str) -> ResultExport:
    from .tasks import result_export_backoff

    last = export.attempts >= settings.PACS_DELIVERY_MAX_ATTEMPTS
    state = ResultExport.State.FAILED if last else ResultExport.State.PENDING
    # a second early: the retry's countdown started a moment before this, and must find it due
    wait = timedelta(seconds=result_export_backoff(export.attempts) - 1)
    due = None if last else timezone.now() + wait
    ResultExport.objects.filter(pk=export.pk, state=ResultExport.State.SENDING).update(
        state=state, destination=destination, last_error=message, next_attempt_at=due
    )
    export.refresh_from_db()
    logger.warning(
        "Result export %s to %s failed (attempt %s of %s): %s",
        export.pk,
        destination or "nowhere",
        export.attempts,
        settings.PACS_DELIVERY_MAX_ATTEMPTS,
        message,
    )
    if not last:
        raise DeliveryRetry(message, export.attempts)
    return export


# --- STOW-RS ------------------------------------------------------------------------------------


def _stow(report: Dataset) -> None:
    from dicomweb_client.api import DICOMwebClient

    url = settings.PACS_STOW_URL.rstrip("/")
    headers = {"Authorization": settings.PACS_STOW_AUTHORIZATION} if settings.PACS_STOW_AUTHORIZATION else {}
    client = DICOMwebClient(url, headers=headers, timeout=NETWORK_TIMEOUT)
    client.set_http_retry_params(retry=False)  # retries are ours, counted in the database
    try:
        reply = client.store_instances(datasets=[report])
    except requests.exceptions.ConnectionError as exc:
        raise DeliveryError(
            f"could not connect to {url} (connection refused or host unreachable): is the PACS "
            "running and PACS_STOW_URL right?"
        ) from exc
    except requests.exceptions.Timeout as exc:
        raise DeliveryError(f"{url} did not answer within {NETWORK_TIMEOUT} s") from exc
    except requests.exceptions.HTTPError as exc:
        raise DeliveryError(_http_error(url, exc.response)) from exc
    except requests.exceptions.RequestException as exc:
        raise DeliveryError(f"STOW-RS to {url} failed: {exc}") from exc
    failed = [item for item in reply.get("FailedSOPSequence", []) if item.get("ReferencedSOPInstanceUID")]
    if failed:
        reasons = ", ".join(f"0x{int(item.get('FailureReason', 0)):04X}" for item in failed)
        raise DeliveryError(f"{url} refused the report (STOW-RS failure reason {reasons})")


def _http_error(url: str, response: requests.Response | None) -> str:
    if response is None:
        return f"STOW-RS to {url} failed without an HTTP answer"
    hints = {
        401: "check PACS_STOW_AUTHORIZATION",
        403: "the PACS does not let this account store instances",
        404: "check PACS_STOW_URL (the DICOMweb root, e.g. http://pacs:8042/dicom-web/)",
        409: "the PACS already holds a different instance with this SOP Instance UID",
        413: "the PACS refused the size of the request",
    }
    hint = hints.get(response.status_code, "see the PACS's log")
    body = " ".join(response.text.split())[:200]
    return (
        f"the PACS answered HTTP {response.status_code} {response.reason} to the STOW-RS request to "
        f"{response.url}: {hint}" + (f" ({body})" if body else "")
    )


# --- C-STORE ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CStoreDestination:
    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, value: str) -> CStoreDestination:
        """'AET@host:port'."""
        ae_title, at, address = value.partition("@")
        host, colon, port = address.rpartition(":")
        if not (at and colon and ae_title and host and port.isdigit() and len(ae_title) <= 16):
            raise DeliveryError(
                f"PACS_CSTORE is {value!r}; it must look like AET@host:port (AET: 1-16 characters)"
            )
        return cls(ae_title=ae_title, host=host.strip("[]"), port=int(port))


# The meaning of a C-STORE failure status (PS3.4 B.2.3, PS3.7 C), for the message.
CSTORE_FAILURES = {
    0xA700: "out of resources",
    0xA900: "data set does not match SOP class",
    0x0122: "SOP class not supported",
    0x0124: "not authorized",
    0x0211: "unrecognized operation",
    0xC000: "cannot understand",
}


def _cstore(report: Dataset) -> None:
    from pynetdicom import AE

    target = CStoreDestination.parse(settings.PACS_CSTORE)
    where = f"{target.ae_title}@{target.host}:{target.port}"
    try:  # pynetdicom reports a refused connection as an aborted association: tell them apart
        socket.create_connection((target.host, target.port), timeout=NETWORK_TIMEOUT).close()
    except OSError as exc:
        raise DeliveryError(
            f"could not connect to {where} ({exc.strerror or exc}): is the PACS running and "
            "PACS_CSTORE right?"
        ) from exc
    ae = AE(ae_title=settings.DICOM_AE_TITLE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = NETWORK_TIMEOUT
    ae.connection_timeout = NETWORK_TIMEOUT
    ae.add_requested_context(report.SOPClassUID, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(target.host, target.port, ae_title=target.ae_title)
    if assoc.is_rejected:
        raise DeliveryError(
            f"{where} rejected the association from {settings.DICOM_AE_TITLE}: is our AE title "
            "allowed there and the called AE title right?"
        )
    if assoc.is_aborted:
        raise DeliveryError(f"{where} aborted the association from {settings.DICOM_AE_TITLE}")
    if not assoc.is_established:
        raise DeliveryError(f"could not associate with {where}: no answer within {NETWORK_TIMEOUT} s")
    try:
        if not assoc.accepted_contexts:
            raise DeliveryError(f"{where} accepts no Comprehensive SR (SOP class {report.SOPClassUID})")
        status = assoc.send_c_store(report)
    finally:
        if assoc.is_established:
            assoc.release()
    if not status or "Status" not in status:
        raise DeliveryError(f"{where} sent no C-STORE response (connection lost or timed out)")
    code = int(status.Status)
    # 0x0000 success; 0xB000, 0xB006, 0xB007 are warnings: the instance was stored.
    if code != 0x0000 and code not in {0xB000, 0xB006, 0xB007}:
        meaning = CSTORE_FAILURES.get(code) or CSTORE_FAILURES.get(code & 0xFF00, "failure")
        comment = f": {status.ErrorComment}" if status.get("ErrorComment") else ""
        raise DeliveryError(f"{where} refused the report: C-STORE status 0x{code:04X} ({meaning}){comment}")
