"""The migration that makes the study the unit of care keeps every record: each scan becomes a
series of a study, DICOM scans of one patient sharing a StudyInstanceUID become one study, and
the counts of scans, slices, predictions and reviews do not change."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("cases", "0011_scan_dicom_source_attributes")]
AFTER = [("cases", "0013_scan_study_required")]


def migrated(targets: list[tuple[str, str]]) -> Any:
    """The database migrated to `targets`; the historical apps of that state."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


@pytest.fixture
def at_latest():
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def one_slice(Slice: Any, scan: Any, **fields: Any) -> Any:
    """A slice row of a historical model, as an upload stored it."""
    return Slice.objects.create(
        scan=scan,
        position=0,
        image="s.png",
        thumbnail="t.png",
        content_type="image/png",
        sha256="a" * 64,
        width=64,
        height=64,
        size_bytes=1,
        **fields,
    )


def test_scans_become_series_of_studies_and_nothing_is_lost(at_latest):
    old = migrated(BEFORE)
    team = old.get_model("cases", "CareTeam").objects.create(name="Chest")
    Patient = old.get_model("cases", "Patient")
    ann = Patient.objects.create(team=team, mrn="A-1", name="Ann Lee", birth_date=date(1950, 1, 1))
    bob = Patient.objects.create(team=team, mrn="B-2", name="Bob Ray", birth_date=date(1951, 2, 2))
    user = old.get_model("auth", "User").objects.create(username="carol")
    version = old.get_model("inference", "ModelVersion").objects.create(name="v-test", sha256="0" * 64)
    Scan = old.get_model("cases", "Scan")
    now = timezone.now()
    scans = {
        "ann-ct-1": Scan.objects.create(
            patient=ann,
            study_instance_uid="1.2.3",
            series_instance_uid="1.2.3.1",
            accession_number="",
            study_date=date(2026, 3, 2),
            created_at=now,
        ),
        "ann-ct-2": Scan.objects.create(
            patient=ann,
            study_instance_uid="1.2.3",
            series_instance_uid="1.2.3.2",
            accession_number="ACC9",
            study_date=date(2026, 3, 1),
            created_at=now - timedelta(hours=1),
        ),
        "ann-other": Scan.objects.create(
            patient=ann,
            study_instance_uid="1.2.4",
            series_instance_uid="1.2.4.1",
            study_date=date(2026, 4, 1),
        ),
        "ann-jpeg": Scan.objects.create(patient=ann, study_date=date(2026, 5, 1)),
        "ann-jpeg-2": Scan.objects.create(patient=ann, study_date=date(2026, 5, 1)),
        "bob-same-uid": Scan.objects.create(
            patient=bob,
            study_instance_uid="1.2.3",
            series_instance_uid="1.2.3.9",
            study_date=date(2026, 3, 2),
        ),
    }
    Slice = old.get_model("cases", "Slice")
    Prediction = old.get_model("cases", "Prediction")
    for scan in scans.values():
        one_slice(Slice, scan)
        Prediction.objects.create(
            scan=scan, model_version=version, status="succeeded", label="malignant", finding="a finding"
        )
    purged = Scan.objects.create(patient=bob, study_date=date(2026, 7, 1)).pk  # the newest scan, then
    Scan.objects.filter(pk=purged).delete()  # purged: its id may sit in an old link; no study takes it
    prediction = Prediction.objects.get(scan=scans["ann-ct-1"])
    old.get_model("cases", "Review").objects.create(
        prediction=prediction, reviewer=user, verdict="agree", label="malignant"
    )
    before = {
        name: old.get_model("cases", name).objects.count()
        for name in ("Scan", "Slice", "Prediction", "Review")
    }

    new = migrated(AFTER)

    after = {
        name: new.get_model("cases", name).objects.count()
        for name in ("Scan", "Slice", "Prediction", "Review")
    }
    assert after == before == {"Scan": 6, "Slice": 6, "Prediction": 6, "Review": 1}
    Scan = new.get_model("cases", "Scan")
    study = {name: Scan.objects.get(pk=scan.pk).study for name, scan in scans.items()}
    assert new.get_model("cases", "Study").objects.count() == 5
    assert study["ann-ct-1"] == study["ann-ct-2"]  # one DICOM study, two series
    assert (
        len({study[name].pk for name in ("ann-ct-1", "ann-other", "ann-jpeg", "ann-jpeg-2", "bob-same-uid")})
        == 5
    )
    merged = study["ann-ct-1"]
    assert (merged.patient_id, merged.study_instance_uid, merged.accession_number) == (
        ann.pk,
        "1.2.3",
        "ACC9",
    )
    assert merged.study_date == date(2026, 3, 1) and merged.created_at == scans["ann-ct-2"].created_at
    assert study["bob-same-uid"].patient_id == bob.pk  # never merged across patients
    assert study["ann-jpeg"].study_instance_uid == "" and study["ann-jpeg"].study_date == date(2026, 5, 1)
    # a study keeps its first series' id (FHIR's ImagingStudy/{id} was the scan's), and new studies
    # are numbered past every scan: the second series' old id names no study
    assert merged.pk == scans["ann-ct-1"].pk and study["ann-jpeg"].pk == scans["ann-jpeg"].pk
    patient = new.get_model("cases", "Patient").objects.get(pk=ann.pk)
    later = new.get_model("cases", "Study").objects.create(patient=patient, study_date=date(2026, 6, 1))
    assert later.pk > purged > max(scan.pk for scan in scans.values())
    assert not new.get_model("cases", "Study").objects.filter(pk=scans["ann-ct-2"].pk).exists()


# Where every app stood before the study, intake and integration migrations of this change.
BEFORE_ALL = [
    ("cases", "0010_scale_indexes"),
    ("pacs", "0001_initial"),
    ("webhooks", "0001_initial"),
    ("audit", "0002_append_only_trigger"),
    ("inference", "0002_modelversion_files"),
]
KEPT = {
    "cases": ["CareTeam", "Patient", "Scan", "Slice", "Prediction", "Review"],
    "pacs": ["DicomNode", "UnmatchedSeries", "ResultExport"],
    "webhooks": ["WebhookEndpoint", "WebhookEvent", "WebhookDelivery"],
    "audit": ["AuditEntry"],
}


def counts(apps: Any) -> dict[str, int]:
    return {name: apps.get_model(app, name).objects.count() for app, names in KEPT.items() for name in names}


def test_every_migration_of_the_change_keeps_every_record(at_latest):
    old = migrated(BEFORE_ALL)
    team = old.get_model("cases", "CareTeam").objects.create(name="Chest")
    ann = old.get_model("cases", "Patient").objects.create(
        team=team, mrn="A-1", name="Ann Lee", birth_date=date(1950, 1, 1)
    )
    user = old.get_model("auth", "User").objects.create(username="carol")
    version = old.get_model("inference", "ModelVersion").objects.create(name="v-all", sha256="1" * 64)
    Scan, Slice = old.get_model("cases", "Scan"), old.get_model("cases", "Slice")
    Prediction = old.get_model("cases", "Prediction")
    scans = [
        Scan.objects.create(patient=ann, study_instance_uid="1.2.3", series_instance_uid=f"1.2.3.{n}")
        for n in (1, 2)
    ] + [Scan.objects.create(patient=ann)]
    for scan in scans:
        one_slice(Slice, scan, sop_instance_uid=f"{scan.pk}.9")
        prediction = Prediction.objects.create(
            scan=scan, model_version=version, status="succeeded", label="malignant", finding="a finding"
        )
    old.get_model("cases", "Review").objects.create(
        prediction=prediction, reviewer=user, verdict="agree", label="malignant"
    )
    node = old.get_model("pacs", "DicomNode").objects.create(team=team, ae_title="CT-ROUTER")
    old.get_model("pacs", "UnmatchedSeries").objects.create(
        team=team, reason="mismatch", received_via="cstore", folder="incoming/x"
    )
    export = old.get_model("pacs", "ResultExport").objects.create(
        prediction=prediction, sop_instance_uid="1.2.9", destination="http://pacs/", state="pending"
    )
    endpoint = old.get_model("webhooks", "WebhookEndpoint").objects.create(
        team=team, url="https://ehr.example/hook", secret="whsec_x"
    )
    event = old.get_model("webhooks", "WebhookEvent").objects.create(
        event_id="evt_1", type="study.received", team=team, payload={}
    )
    old.get_model("webhooks", "WebhookDelivery").objects.create(event=event, endpoint=endpoint)
    old.get_model("audit", "AuditEntry").objects.create(channel="page", action="read", patient_id=ann.pk)
    before = counts(old)

    new = migrated(MigrationExecutor(connection).loader.graph.leaf_nodes())

    assert counts(new) == before and all(before.values())
    assert (
        new.get_model("cases", "Study").objects.count() == 2
    )  # the two series of 1.2.3, and the image study
    # what the new columns hold for old rows
    assert new.get_model("pacs", "DicomNode").objects.get(pk=node.pk).addresses == ""  # refused until set
    assert new.get_model("pacs", "ResultExport").objects.get(pk=export.pk).next_attempt_at is not None
    assert new.get_model("cases", "Scan").objects.get(pk=scans[0].pk).dicom_source_attributes == {}
