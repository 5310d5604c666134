"""DICOM's side of the record: who may send us studies, what arrived without a patient, and
where each result went back."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from cases.models import CareTeam, Patient, Prediction, Scan


class DicomNode(models.Model):
    """A PACS or router allowed to send studies for one care team (by its calling AE title for
    C-STORE; STOW-RS senders authenticate with a team member's token instead)."""

    team = models.ForeignKey(CareTeam, on_delete=models.PROTECT, related_name="dicom_nodes")
    ae_title = models.CharField(
        "calling AE title", max_length=16, unique=True, help_text="as the sender presents itself"
    )
    description = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["ae_title"]
        verbose_name = "DICOM sender"

    def __str__(self) -> str:
        return f"{self.ae_title} → {self.team}"


class UnmatchedSeries(models.Model):
    """A series that arrived without a patient we could be sure of: it waits, with its files kept
    privately, until a clinician of the team picks the patient (or a new one)."""

    class Reason(models.TextChoices):
        UNKNOWN = "unknown", "no patient with this PatientID in the team"
        AMBIGUOUS = "ambiguous", "more than one patient could match"
        MISMATCH = "mismatch", "the header disagrees with the patient it was sent for"

    team = models.ForeignKey(CareTeam, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=16, choices=Reason.choices)
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

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"SR of prediction {self.prediction_id} ({self.state})"

    @property
    def audit_patient_id(self) -> int:
        return self.prediction.scan.patient_id
