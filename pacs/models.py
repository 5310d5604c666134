"""DICOM's side of the record: who may send us studies, what arrived without a patient, and
where each result went back."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import ssl

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from cases.models import CareTeam, Patient, Prediction, Scan

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def parse_networks(value: str) -> list[Network]:
    """The networks in "10.1.2.3, 10.8.0.0/16 fd00::/8", a bare address being a network of one
    (ValueError on anything else). Host bits are tolerated: "10.1.2.3/24" is 10.1.2.0/24."""
    return [ipaddress.ip_network(item, strict=False) for item in value.replace(",", " ").split()]


def validate_networks(value: str) -> None:
    try:
        networks = parse_networks(value)
    except ValueError as error:
        raise ValidationError(f"Not an IP address or network (CIDR): {error}") from error
    if not networks:
        raise ValidationError("Give the addresses the sender connects from (e.g. 10.1.2.3 or 10.1.2.0/24).")


def parse_certificates(value: str) -> list[bytes]:
    """The DER bytes of each PEM certificate in the text (ValueError if one is malformed)."""
    return [ssl.PEM_cert_to_DER_cert(block) for block in PEM_CERTIFICATE.findall(value)]


def validate_certificates(value: str) -> None:
    if not value.strip():
        return
    try:
        certificates = parse_certificates(value)
        if certificates:
            # OpenSSL's own parse: what the receiver will load as a trust anchor
            ssl.create_default_context().load_verify_locations(cadata=b"".join(certificates))
    except (ValueError, ssl.SSLError) as error:
        raise ValidationError(f"Not a readable PEM certificate: {error}") from error
    if not certificates:
        raise ValidationError("Paste PEM certificates (-----BEGIN CERTIFICATE----- …).")


class DicomNode(models.Model):
    """A PACS or router allowed to send studies for one care team by C-STORE: its calling AE title,
    the addresses it connects from and, with DICOM TLS, its certificate. (STOW-RS senders
    authenticate with a team member's token instead.)"""

    team = models.ForeignKey(CareTeam, on_delete=models.PROTECT, related_name="dicom_nodes")
    ae_title = models.CharField(
        "calling AE title", max_length=16, unique=True, help_text="as the sender presents itself"
    )
    addresses = models.CharField(
        max_length=1000,
        validators=[validate_networks],
        help_text="IP addresses or networks (CIDR) it connects from, separated by commas or spaces: "
        "10.1.2.3, 10.1.8.0/24",
    )
    tls_certificate = models.TextField(
        "TLS certificate",
        blank=True,
        validators=[validate_certificates],
        help_text="required with DICOM TLS: the PEM of the certificate it presents (pinned), or of the CA "
        "that issues it (any certificate of that CA is then accepted for this AE title and addresses)",
    )
    description = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["ae_title"]
        verbose_name = "DICOM sender"

    def __str__(self) -> str:
        return f"{self.ae_title} → {self.team}"

    def admits(self, address: str) -> bool:
        """Whether a connection from this peer address may be this sender."""
        try:
            peer = ipaddress.ip_address(address.split("%")[0])
            networks = parse_networks(self.addresses)
        except ValueError:
            return False
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
            peer = peer.ipv4_mapped  # a dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d
        return any(peer in network for network in networks)

    @property
    def certificate_fingerprints(self) -> set[str]:
        """SHA-256 of each certificate in `tls_certificate` (pinned client certificates and CAs)."""
        try:
            return {hashlib.sha256(der).hexdigest() for der in parse_certificates(self.tls_certificate)}
        except ValueError:
            return set()


class UnmatchedSeries(models.Model):
    """A series that arrived without a patient we could be sure of: it waits, with its files kept
    privately, until a clinician of the team picks the patient (or a new one)."""

    class Reason(models.TextChoices):
        UNKNOWN = "unknown", "no patient with this PatientID in the team"
        AMBIGUOUS = "ambiguous", "more than one patient could match"
        MISMATCH = "mismatch", "the header disagrees with the patient it was sent for"  # before 0002
        NO_BIRTH_DATE = "no_birth_date", "no birth date in the header to confirm the patient"
        OTHER_BIRTH_DATE = "other_birth_date", "the birth date differs from the patient's"
        NO_NAME = "no_name", "no name in the header to confirm the patient"
        OTHER_NAME = "other_name", "the name differs from the patient's"

    team = models.ForeignKey(CareTeam, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    detail = models.TextField(blank=True, help_text="exactly why it waits (seen by the team's clinicians)")
    received_via = models.CharField(max_length=16, choices=Scan.Received.choices)
    sender = models.CharField(max_length=200, blank=True, help_text="calling AE title or user")
    dicom_patient_id = models.CharField("DICOM PatientID", max_length=64, blank=True)
    dicom_patient_name = models.CharField("DICOM PatientName", max_length=200, blank=True)
    dicom_birth_date = models.DateField("DICOM PatientBirthDate", null=True, blank=True)
    dicom_sex = models.CharField("DICOM PatientSex", max_length=16, blank=True)
    study_instance_uid = models.CharField(max_length=64, blank=True)
    series_instance_uid = models.CharField(max_length=64, blank=True)
    study_date = models.DateField(null=True, blank=True)
    instances = models.PositiveIntegerField(default=0)
    folder = models.CharField(max_length=200, help_text="private media folder holding the received files")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    scan = models.ForeignKey(Scan, on_delete=models.PROTECT, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "unmatched series"

    def __str__(self) -> str:
        return f"Unmatched series {self.series_instance_uid or self.pk} ({self.get_reason_display()})"

    @property
    def is_resolved(self) -> bool:
        return self.resolved_at is not None


class ResultExport(models.Model):
    """A prediction's DICOM Structured Report, and its delivery to the configured PACS."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    prediction = models.OneToOneField(Prediction, on_delete=models.PROTECT, related_name="export")
    sop_instance_uid = models.CharField("SR SOP Instance UID", max_length=64, unique=True)
    destination = models.CharField(max_length=300, blank=True, help_text="where it is sent; blank: not sent")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # When it is due (pending: its next attempt; sending: when the attempt is presumed lost). The
    # sweep re-sends what is overdue: a lost broker message or a dead worker loses no report.
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"SR of prediction {self.prediction_id} ({self.state})"

    @property
    def audit_patient_id(self) -> int:
        return self.prediction.scan.patient_id
