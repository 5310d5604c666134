"""The DICOM C-STORE receiver (an SCP, run by `manage.py dicom_receiver`): PACS and routers an admin
allowed for a care team (calling AE title, the addresses it connects from and, with DICOM TLS, its
certificate) send CT series here. Each association's instances are collected and, once it is
released, read and stored as one delivery (a study that breaks off halfway is not stored at all)."""

from __future__ import annotations

import hashlib
import logging
import socket
import ssl
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from pydicom import Dataset, dcmread
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, _config, evt
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from audit import trail
from cases.models import Scan

from .inbox import InboxFolder, leftovers
from .ingest import already_stored_sorted, instance_or_series_stored
from .models import DicomNode, parse_certificates
from .reading import DicomRefused, Failure, SeriesReader, read_series
from .receiving import studies_receive

logger = logging.getLogger(__name__)

NOT_AUTHORISED = 0x0124  # PS3.7 C.4.2: "Refused: Not Authorized"
# A-ASSOCIATE-RJ (PS3.8 9.3.4): rejected-permanent, by the service user, calling AE title not recognised
REJECT_UNKNOWN_CALLER = (0x01, 0x01, 0x03)
TLS_HANDSHAKE_SECONDS = 10.0


class Receiver:
    """One AE serving C-ECHO and C-STORE of CT images; deliveries are stored one at a time."""

    def __init__(self) -> None:
        self.ae = AE(ae_title=settings.DICOM_AE_TITLE)
        self.ae.require_called_aet = True
        self.ae.add_supported_context(Verification)
        self.ae.add_supported_context(CTImageStorage, ALL_TRANSFER_SYNTAXES)  # non-CT is not negotiated
        self.ae.maximum_pdu_size = 256 * 1024  # what one PDU may hold in memory
        _config.STORE_RECV_CHUNKED_DATASET = True  # instances arrive on disk, never whole in memory
        self.deliveries: dict[Any, Delivery] = {}  # association → what it has sent so far
        self.lock = threading.Lock()
        self.storing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dicom-store")
        # association → the pk of the DicomNode it was accepted as (gone with the association)
        self.senders: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self.tls = SenderTLS() if settings.DICOM_TLS_CERT else None

    def handlers(self) -> list[Any]:
        return [
            (evt.EVT_REQUESTED, self.allowed_senders),
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_RELEASED, self.on_released),
            (evt.EVT_ABORTED, self.on_aborted),
        ]

    def serve(self, *, block: bool = True) -> Any:
        address = (settings.DICOM_HOST, settings.DICOM_PORT)
        logger.info(
            "DICOM receiver %s listening on %s:%s%s",
            settings.DICOM_AE_TITLE,
            *address,
            " (DICOM TLS)" if self.tls else "",
        )
        self.recover()
        return self.ae.start_server(address, block=block, evt_handlers=self.handlers(), ssl_context=self.tls)

    def allowed_senders(self, event: Any) -> None:
        """Accept an association only as an enabled sender whose AE title, address and (with TLS)
        certificate all agree, read afresh for each one: an admin's change applies at once. Anyone
        else, or an error while checking, gets A-ASSOCIATE-RJ before any data is exchanged."""
        assoc = event.assoc
        calling = str(assoc.requestor.primitive.calling_ae_title).strip()
        try:
            address = str(assoc.requestor.address)
            node = self.sender_check(calling, address, _peer_certificate(assoc))
        except Exception:
            logger.exception("Association from %s rejected: the sender could not be checked", calling)
            node = None
        finally:
            close_old_connections()
        if node is None:
            assoc.acse.send_reject(*REJECT_UNKNOWN_CALLER)
            assoc.kill()  # as pynetdicom's own rejections do: the DUL sends the A-ASSOCIATE-RJ first
            return
        self.senders[assoc] = node.pk

    def sender_check(
        self, ae_title: str, address: str, certificate: PeerCertificate | None
    ) -> DicomNode | None:
        """The one enabled sender this caller is (AE title, address, and with TLS the certificate),
        or None."""
        candidates = [
            node for node in DicomNode.objects.filter(ae_title=ae_title, enabled=True) if node.admits(address)
        ]
        if self.tls is not None:
            candidates = [node for node in candidates if certificate is not None and certificate.is_of(node)]
        if len(candidates) != 1:
            logger.warning(
                "Association from %s at %s rejected: %s",
                ae_title,
                address,
                "more than one sender matches" if candidates else "not an allowed sender from there",
            )
            return None
        return candidates[0]

    def sender_of(self, event: Any) -> int | None:
        """The pk of the DicomNode this event's association was accepted as (deliver for it)."""
        return self.senders.get(event.assoc)

    def on_store(self, event: Any) -> int | Dataset:
        """Check each instance before answering it: one that will not be kept gets a failure
        status (A700, A900, C000 families) with the reason as its ErrorComment, so the sender knows;
        one answered Success is in the association's inbox folder on disk first, and stored when the
        association ends (released or aborted: what was answered Success is ours to keep)."""
        if self.sender_of(event) is None:  # accepted associations only (see allowed_senders)
            return NOT_AUTHORISED
        delivery = self._delivery(event)
        delivery.received += 1
        number = delivery.received
        name = f"instance {number}"
        kept: Path | None = None
        try:
            received = Path(event.dataset_path)  # pynetdicom wrote it to disk as it arrived
            size = received.stat().st_size
            if size > settings.UPLOAD_MAX_FILE_BYTES or len(delivery.reader) >= settings.UPLOAD_MAX_FILES:
                raise DicomRefused(
                    f"{name}: past a limit: at most {settings.UPLOAD_MAX_FILES} instances of at most "
                    f"{settings.UPLOAD_MAX_FILE_BYTES // (1024 * 1024)} MB in one association.",
                    failure=Failure.OUT_OF_RESOURCES,
                )
            delivery.reader.budget.take_bytes(name, size)
            kept = delivery.folder.add(number, received)
            if self._already_stored(delivery, name, kept):
                kept.unlink()
                return 0x0000  # acknowledged: the team holds this instance as sent
            delivery.reader.add(name, kept)
        except DicomRefused as refused:
            if kept is not None:
                kept.unlink(missing_ok=True)
            delivery.refused.append(str(refused))
            logger.warning("C-STORE from %s: %s", _caller(event), refused)
            return _failure_status(refused)
        return 0x0000

    def _delivery(self, event: Any) -> Delivery:
        assoc = event.assoc
        with self.lock:
            if assoc not in self.deliveries:
                node_id = self.senders[assoc]
                team_id = DicomNode.objects.values_list("team_id", flat=True).get(pk=node_id)
                folder = InboxFolder.create(node_id=node_id, ae_title=_caller(event))
                reader = SeriesReader(max_slices=settings.UPLOAD_MAX_FILES)
                self.deliveries[assoc] = Delivery(reader, [], team_id, folder)
            return self.deliveries[assoc]

    def recover(self) -> None:
        """Deliver what an earlier run answered Success but did not store (a crash, a restart)."""
        for folder in leftovers():
            logger.warning("DICOM inbox %s left by an earlier run: storing it now", folder.path.name)
            self.storing.submit(deliver, folder)

    def _already_stored(self, delivery: Delivery, name: str, kept: Path) -> bool:
        """Whether the team already holds this instance as sent (acknowledged, not kept twice).
        DicomRefused for other content under a stored SOP Instance UID, or more of a stored series."""
        uids = _uids(kept)
        if uids is None or not instance_or_series_stored(delivery.team_id, *uids):
            return False  # an unreadable header is for the reader to refuse, with its reason
        single = read_series([(name, kept)], max_slices=1, budget=delivery.reader.budget)
        known = already_stored_sorted(delivery.team_id, single)
        if known.conflicts:
            raise DicomRefused(known.conflicts[0].reason, failure=Failure.DUPLICATE)
        return not known.series

    def on_aborted(self, event: Any) -> None:
        self._ended(event, "aborted")

    def on_released(self, event: Any) -> None:
        self._ended(event, "released")

    def _ended(self, event: Any, how: str) -> None:
        """Store what the association was told is stored, however it ended."""
        with self.lock:
            delivery = self.deliveries.pop(event.assoc, None)
        if delivery is None:
            return
        if how == "aborted" and len(delivery.reader):
            logger.warning(
                "Association from %s aborted: storing the %d instance(s) it was told were stored",
                _caller(event),
                len(delivery.reader),
            )
        if delivery.refused:
            trail.record(
                trail.Action.UPLOAD,
                object_type="dicom_delivery",
                outcome=trail.Outcome.REFUSED,
                detail=f"C-STORE from {_caller(event)}: {len(delivery.refused)} instance(s) refused; "
                f"first: {delivery.refused[0]}"[:500],
            )
        self.storing.submit(deliver, delivery.folder)


@dataclass
class Delivery:
    """One association's instances: those checked and kept (read again when stored), and the
    reasons of those refused (already told to the sender)."""

    reader: SeriesReader
    refused: list[str]
    team_id: int
    folder: InboxFolder
    received: int = 0  # instances sent so far, kept or not: each gets its own number


def _uids(path: Path) -> tuple[str, str] | None:
    """(SOP Instance UID, Series Instance UID) from a file's header, or None if it cannot be read."""
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID", "SeriesInstanceUID"])
    except Exception:  # damaged: the reader refuses it with a reason
        return None
    return str(ds.get("SOPInstanceUID", "")).strip(), str(ds.get("SeriesInstanceUID", "")).strip()


def _caller(event: Any) -> str:
    return str(event.assoc.requestor.ae_title).strip()


def _failure_status(refused: DicomRefused) -> Dataset:
    status = Dataset()
    status.Status = int(refused.failure)
    # ErrorComment is an LO (64 characters of the default repertoire): the reason, without the
    # file's name we gave it, in plain ASCII
    reason = str(refused).split(": ", 1)[-1].replace("×", "x")
    status.ErrorComment = reason.encode("ascii", "replace").decode("ascii")[:64]
    return status


def deliver(folder: InboxFolder) -> None:
    """Store an association's inbox folder for its sender's care team, then remove it (its own
    thread; errors are logged, never raised into the network loop, and the folder is kept for the
    next start). Its instances were checked when they arrived and are read again here, so what is
    stored is what the sender was told was stored."""
    sender = folder.path.name
    try:
        files = folder.files()
        if files:
            node_id, sender = folder.sender()
            node = DicomNode.objects.select_related("team").get(pk=node_id)
            received = studies_receive(
                team=node.team, files=files, via=Scan.Received.CSTORE, sender=sender, partial=True
            )
            for refusal in received.refused:  # checked before the answer: this is a fault of ours
                logger.error(
                    "C-STORE from %s: an instance answered Success is refused now: %s", sender, refusal
                )
            logger.info(
                "C-STORE from %s: %d scan(s) stored, %d series waiting for a patient",
                sender,
                len(received.scans),
                len(received.waiting),
            )
        folder.remove()
    except Exception:
        logger.exception("C-STORE from %s could not be stored; kept in the inbox for the next start", sender)
    finally:
        close_old_connections()


# --- DICOM TLS ------------------------------------------------------------------------------------


class PeerCertificate:
    """The client certificate a TLS peer presented (OpenSSL verified it against the trust anchors
    of all enabled senders: a pinned certificate, or a CA)."""

    def __init__(self, der: bytes, decoded: dict[str, Any]) -> None:
        self.fingerprint = hashlib.sha256(der).hexdigest()
        self.issuer = decoded.get("issuer")

    def is_of(self, node: DicomNode) -> bool:
        """Whether it is this sender's: pinned by it, or issued by one of its CAs (OpenSSL checked
        the signature; the issuer's name says which of the trusted CAs it was)."""
        if self.fingerprint in node.certificate_fingerprints:
            return True
        return self.issuer is not None and self.issuer in _ca_subjects(node.tls_certificate)


def _peer_certificate(assoc: Any) -> PeerCertificate | None:
    # assoc.dul.socket is pynetdicom's AssociationSocket; its .socket the accepted (SSL) socket
    connection = getattr(assoc.dul.socket, "socket", None)
    if not isinstance(connection, ssl.SSLSocket):
        return None
    der = connection.getpeercert(binary_form=True)
    if not der:
        return None
    return PeerCertificate(der, connection.getpeercert() or {})


def _ca_subjects(pem: str) -> list[Any]:
    """The subjects of the CA certificates in a sender's PEM (leaf certificates are left out)."""
    certificates = parse_certificates(pem)
    if not certificates:
        return []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=b"".join(certificates))
    return [ca.get("subject") for ca in context.get_ca_certs()]


def _trusted_certificates() -> bytes:
    """DER of every enabled sender's certificates, the TLS trust anchors."""
    pems = DicomNode.objects.filter(enabled=True).exclude(tls_certificate="")
    return b"".join(der for pem in pems.values_list("tls_certificate", flat=True) for der in _ders(pem))


def _ders(pem: str) -> list[bytes]:
    try:
        return parse_certificates(pem)
    except ValueError:
        return []


def _server_context(trusted: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.DICOM_TLS_CERT, settings.DICOM_TLS_KEY)
    context.verify_mode = ssl.CERT_REQUIRED  # every sender presents a certificate
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a pinned certificate is its own anchor
    if trusted:  # none: every handshake fails, as it should
        context.load_verify_locations(cadata=trusted)
    return context


class SenderTLS(ssl.SSLContext):
    """What pynetdicom wraps each accepted connection with. It does so in its one accepting thread,
    so the handshake gets a time limit (a client that connects and says nothing would otherwise hold
    up every sender), and the trusted certificates are read afresh for each connection (an admin's
    change applies at once; the context is rebuilt only when they changed). Which sender a
    certificate belongs to is checked per association (`Receiver.sender_check`)."""

    def __new__(cls) -> SenderTLS:
        return super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)

    def __init__(self) -> None:
        self.built: tuple[bytes, ssl.SSLContext] | None = None
        self.built_lock = threading.Lock()
        try:
            self.current()  # a wrong DICOM_TLS_CERT or key fails at start, not at the first sender
        finally:
            close_old_connections()

    def current(self) -> ssl.SSLContext:
        trusted = _trusted_certificates()
        with self.built_lock:
            if self.built is None or self.built[0] != trusted:
                self.built = (trusted, _server_context(trusted))
            return self.built[1]

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        try:
            address = str(sock.getpeername()[0])
            if not any(node.admits(address) for node in DicomNode.objects.filter(enabled=True)):
                # no handshake for strangers: only an allowed sender's address can spend its time limit
                sock.close()
                logger.warning("TLS connection from %s dropped: no sender is allowed from there", address)
                raise OSError(f"no DICOM sender is allowed from {address}")
            context = self.current()
        except OSError:
            raise
        except Exception as error:
            # pynetdicom's accept loop drops a connection on OSError; anything else would end it
            sock.close()
            logger.exception("TLS connection dropped: the trusted certificates could not be read")
            raise OSError("DICOM TLS unavailable") from error
        finally:
            close_old_connections()
        sock.settimeout(TLS_HANDSHAKE_SECONDS)
        wrapped = context.wrap_socket(sock, server_side=True)  # OSError (closed) on a failed handshake
        wrapped.settimeout(None)  # as an accepted plain socket is: blocking
        return wrapped
