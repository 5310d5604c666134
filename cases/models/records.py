"""Care teams, patients, their imaging studies, each study's series (`Scan`) and their slices."""

from __future__ import annotations

from datetime import date

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from inference.preprocessing import CLASS_NAMES

from ..validators import plausible_date

LABEL_CHOICES = [(name, name.capitalize()) for name in CLASS_NAMES]


class CareTeam(models.Model):
    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="care_teams", blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Patient(models.Model):
    class Sex(models.TextChoices):
        FEMALE = "F", "Female"
        MALE = "M", "Male"
        OTHER = "O", "Other"
        UNKNOWN = "U", "Unknown"

    team = models.ForeignKey(CareTeam, on_delete=models.PROTECT, related_name="patients")
    mrn = models.CharField(
        "MRN",
        max_length=32,
        help_text="Medical record number: letters, digits, dot, dash or underscore.",
        validators=[RegexValidator(r"^[A-Za-z0-9._-]+$", "Use only letters, digits, '.', '-' and '_'.")],
    )
    name = models.CharField(max_length=200)
    birth_date = models.DateField(validators=[plausible_date])
    sex = models.CharField(max_length=1, choices=Sex.choices, default=Sex.UNKNOWN)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        indexes = [
            # The patient list: a team's patients by name, paged (the order an index scan keeps).
            models.Index(fields=["team", "name", "id"], name="patient_team_name"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "mrn"],
                name="patient_mrn_unique_per_team",
                violation_error_message="A patient with this MRN already exists in this care team.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.mrn})"

    def get_absolute_url(self) -> str:
        return reverse("cases:patient_detail", args=[self.pk])

    @property
    def audit_patient_id(self) -> int:
        return self.pk

    def clean(self) -> None:
        first_study = (
            self.scans.order_by("study_date").values_list("study_date", flat=True).first()
            if self.pk
            else None
        )
        if first_study is not None and self.birth_date and self.birth_date > first_study:
            raise ValidationError(
                {"birth_date": [f"The birth date is after the patient's first study ({first_study})."]}
            )

    @property
    def age(self) -> int:
        today = date.today()
        before_birthday = (today.month, today.day) < (self.birth_date.month, self.birth_date.day)
        return today.year - self.birth_date.year - before_birthday


def _not_before_birth(patient: Patient | None, study_date: date | None) -> None:
    if patient is not None and study_date and study_date < patient.birth_date:
        raise ValidationError(
            {"study_date": [f"The study date is before the patient's birth date ({patient.birth_date})."]}
        )


class Study(models.Model):
    """An imaging study, the unit of care: what a PACS knows by its StudyInstanceUID (and accession
    number), holding its series. A JPEG/PNG upload is a study with one series; DICOM series of one
    StudyInstanceUID join the patient's study of that UID."""

    class Priority(models.TextChoices):
        ROUTINE = "routine", "Routine"
        URGENT = "urgent", "Urgent"
        STAT = "stat", "Stat"

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="studies")
    study_instance_uid = models.CharField("Study Instance UID", max_length=64, blank=True, db_index=True)
    accession_number = models.CharField(max_length=16, blank=True)
    study_date = models.DateField(default=date.today, validators=[plausible_date])
    study_time = models.TimeField(null=True, blank=True)
    description = models.CharField(max_length=64, blank=True)
    priority = models.CharField(max_length=8, choices=Priority.choices, default=Priority.ROUTINE)
    indication = models.TextField(blank=True, max_length=2000, help_text="why the study was requested")
    created_at = models.DateTimeField("arrived", default=timezone.now, editable=False)

    class Meta:
        ordering = ["-study_date", "-created_at", "-id"]
        verbose_name_plural = "studies"
        constraints = [
            # One record per DICOM study and patient: a second series or a resend joins it.
            models.UniqueConstraint(
                fields=["patient", "study_instance_uid"],
                condition=~Q(study_instance_uid=""),
                name="study_uid_unique_per_patient",
            ),
        ]
        indexes = [
            models.Index("patient", F("study_date").desc(), F("id").desc(), name="study_patient_date"),
        ]

    def __str__(self) -> str:
        return f"Study {self.pk} of {self.study_date:%Y-%m-%d}"

    def clean(self) -> None:
        _not_before_birth(self.patient if self.patient_id else None, self.study_date)

    @property
    def audit_patient_id(self) -> int:
        return self.patient_id


class Scan(models.Model):
    """A series of a study: one or more CT slices uploaded together, or one DICOM series."""

    class Received(models.TextChoices):
        UPLOAD = "upload", "Upload"
        STOW = "stow", "DICOMweb STOW-RS"
        CSTORE = "cstore", "DICOM C-STORE"

    class WindowSource(models.TextChoices):
        FILE = "file", "the file's own window"
        DEFAULT = "default", "the configured default window"

    # PROTECT throughout the record: nothing clinical is erased by a cascade (see `purge_records`).
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="scans")
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="series")
    study_date = models.DateField(default=date.today, validators=[plausible_date])
    note = models.TextField(blank=True, max_length=2000)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    received_via = models.CharField(max_length=16, choices=Received.choices, default=Received.UPLOAD)
    # A DICOM series' header, as received (blank for JPEG/PNG studies): what the PACS knows it by.
    modality = models.CharField(max_length=16, blank=True)
    study_instance_uid = models.CharField("Study Instance UID", max_length=64, blank=True, db_index=True)
    series_instance_uid = models.CharField("Series Instance UID", max_length=64, blank=True, db_index=True)
    series_number = models.IntegerField(null=True, blank=True)
    series_description = models.CharField(max_length=64, blank=True)
    accession_number = models.CharField(max_length=16, blank=True)
    slice_thickness = models.FloatField(null=True, blank=True, help_text="mm")
    dicom_patient_id = models.CharField("DICOM PatientID", max_length=64, blank=True)
    dicom_patient_name = models.CharField("DICOM PatientName", max_length=200, blank=True)
    dicom_birth_date = models.DateField("DICOM PatientBirthDate", null=True, blank=True)
    dicom_sex = models.CharField("DICOM PatientSex", max_length=16, blank=True)
    # The fields above are readable forms; the SR we send back copies the source's Patient and
    # General Study attributes from here, as received (DICOM JSON, `pacs.reading.SOURCE_KEYWORDS`).
    # Empty for images and for series stored before it was kept.
    dicom_source_attributes = models.JSONField(
        "DICOM patient and study attributes", default=dict, blank=True, editable=False
    )
    # The lung window the model's input was made with, and where it came from.
    window_center = models.FloatField(null=True, blank=True, help_text="HU")
    window_width = models.FloatField(null=True, blank=True, help_text="HU")
    window_source = models.CharField(max_length=16, choices=WindowSource.choices, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The patient page and history: a patient's studies, the latest study date first.
            models.Index(
                "patient",
                F("study_date").desc(),
                F("created_at").desc(),
                F("id").desc(),
                name="scan_patient_study",
            ),
            # The worklist's study_from / study_to filters and its study-date order.
            models.Index(F("study_date").desc(), F("id").desc(), name="scan_study_date"),
            models.Index(F("created_at").desc(), F("id").desc(), name="scan_created"),  # the default order
        ]

    def __str__(self) -> str:
        return f"Scan {self.pk} of {self.study_date:%Y-%m-%d}"

    def get_absolute_url(self) -> str:
        return reverse("cases:scan_detail", args=[self.pk])

    @property
    def is_dicom(self) -> bool:
        return bool(self.series_instance_uid)

    def clean(self) -> None:
        _not_before_birth(self.patient if self.patient_id else None, self.study_date)

    @property
    def audit_patient_id(self) -> int:
        return self.patient_id


class Slice(models.Model):
    scan = models.ForeignKey(Scan, on_delete=models.PROTECT, related_name="slices")
    position = models.PositiveIntegerField()
    # Stored under a generated name; the client's name is kept for display only.
    image = models.FileField(max_length=200)
    thumbnail = models.FileField(max_length=200)
    original_name = models.CharField(max_length=255, blank=True)
    content_type = models.CharField(max_length=50)
    # Of the stored copy (a PNG of the decoded pixels, not the upload): checked when served or read.
    sha256 = models.CharField("SHA-256", max_length=64)
    source_sha256 = models.CharField(
        "source SHA-256",
        max_length=64,
        blank=True,
        help_text="SHA-256 of the file as uploaded, for provenance",
    )
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    size_bytes = models.PositiveIntegerField()  # of the file as uploaded
    # DICOM slices: the instance, and its Hounsfield units as a 16-bit PNG of HU + 32768 (the
    # `image` above is then the model's 8-bit lung-window input).
    sop_instance_uid = models.CharField("SOP Instance UID", max_length=64, blank=True, db_index=True)
    sop_class_uid = models.CharField("SOP Class UID", max_length=64, blank=True)
    instance_number = models.IntegerField(null=True, blank=True)
    location = models.FloatField(null=True, blank=True, help_text="mm along the slice normal")
    hounsfield = models.FileField(max_length=200, blank=True)
    hounsfield_sha256 = models.CharField("Hounsfield SHA-256", max_length=64, blank=True)

    class Meta:
        ordering = ["position"]
        constraints = [models.UniqueConstraint(fields=["scan", "position"], name="slice_position_unique")]

    def __str__(self) -> str:
        return f"Slice {self.position + 1} of scan {self.scan_id}"

    def get_absolute_url(self) -> str:
        return reverse("cases:slice_image", args=[self.pk])

    @property
    def audit_patient_id(self) -> int:
        return self.scan.patient_id
