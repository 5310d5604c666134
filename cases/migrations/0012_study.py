"""The study becomes the unit of care: every existing scan becomes a series of a study. DICOM scans
of one patient that share a StudyInstanceUID become one study with several series; every other
scan (JPEG/PNG uploads) a study of its own. Nothing is removed: only rows are added and a column
filled (tests/cases/test_study_migration.py checks the counts).

A study takes the id of its first series' scan, and new studies are numbered after every scan id:
FHIR's `ImagingStudy/{id}`, which was a scan's id, still names the same study, and the id of a
merged series that was not first names nothing (404), never another study."""

import cases.validators
import datetime
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


def scans_into_studies(apps, schema_editor):
    Scan = apps.get_model("cases", "Scan")
    Study = apps.get_model("cases", "Study")
    groups = {}
    rows = Scan.objects.order_by("id").values_list(
        "id", "patient_id", "study_instance_uid", "accession_number", "study_date", "created_at"
    )
    for row in rows.iterator(chunk_size=2000):
        scan_id, patient_id, uid = row[0], row[1], row[2]
        groups.setdefault((patient_id, uid) if uid else ("scan", scan_id), []).append(row)
    pending = []
    for members in groups.values():
        first = members[0]
        study = Study(
            id=first[0],
            patient_id=first[1],
            study_instance_uid=first[2],
            accession_number=next((m[3] for m in members if m[3]), ""),
            study_date=min(m[4] for m in members),
            created_at=min(m[5] for m in members),
        )
        pending.append((study, [m[0] for m in members]))
    Study.objects.bulk_create([study for study, _ in pending], batch_size=1000)
    Scan.objects.bulk_update(
        [Scan(id=scan_id, study_id=study.pk) for study, ids in pending for scan_id in ids],
        ["study"],
        batch_size=1000,
    )
    _number_studies_after_scans(schema_editor)


def _number_studies_after_scans(schema_editor):
    """The next study id is past every scan id ever given, purged scans' too (explicit ids leave
    the study counter behind): an old ImagingStudy link never names a new study."""
    with schema_editor.connection.cursor() as cursor:
        if schema_editor.connection.vendor == "postgresql":
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('cases_study', 'id'), GREATEST("
                "COALESCE(pg_sequence_last_value(pg_get_serial_sequence('cases_scan', 'id')::regclass), 1), "
                "(SELECT COALESCE(MAX(id), 1) FROM cases_study)))"
            )
        elif schema_editor.connection.vendor == "sqlite":
            cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = 'cases_scan'")
            row = cursor.fetchone()
            cursor.execute("SELECT COALESCE(MAX(id), 0) FROM cases_study")
            last = max(row[0] if row else 0, cursor.fetchone()[0])
            cursor.execute("DELETE FROM sqlite_sequence WHERE name = 'cases_study'")
            cursor.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('cases_study', %s)", [last])


def studies_into_scans(apps, schema_editor):
    apps.get_model("cases", "Scan").objects.update(study=None)
    apps.get_model("cases", "Study").objects.all().delete()


class Migration(migrations.Migration):

    dependencies = [
        ('cases', '0011_scan_dicom_source_attributes'),
    ]

    operations = [
        migrations.CreateModel(
            name='Study',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('study_instance_uid', models.CharField(blank=True, db_index=True, max_length=64, verbose_name='Study Instance UID')),
                ('accession_number', models.CharField(blank=True, max_length=16)),
                ('study_date', models.DateField(default=datetime.date.today, validators=[cases.validators.plausible_date])),
                ('study_time', models.TimeField(blank=True, null=True)),
                ('description', models.CharField(blank=True, max_length=64)),
                ('priority', models.CharField(choices=[('routine', 'Routine'), ('urgent', 'Urgent'), ('stat', 'Stat')], default='routine', max_length=8)),
                ('indication', models.TextField(blank=True, help_text='why the study was requested', max_length=2000)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, editable=False, verbose_name='arrived')),
                ('patient', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='studies', to='cases.patient')),
            ],
            options={
                'verbose_name_plural': 'studies',
                'ordering': ['-study_date', '-created_at', '-id'],
            },
        ),
        migrations.AddField(
            model_name='scan',
            name='study',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name='series', to='cases.study'),
        ),
        migrations.AddIndex(
            model_name='study',
            index=models.Index(models.F('patient'), models.OrderBy(models.F('study_date'), descending=True), models.OrderBy(models.F('id'), descending=True), name='study_patient_date'),
        ),
        migrations.AddConstraint(
            model_name='study',
            constraint=models.UniqueConstraint(condition=models.Q(('study_instance_uid', ''), _negated=True), fields=('patient', 'study_instance_uid'), name='study_uid_unique_per_patient'),
        ),
        migrations.RunPython(scans_into_studies, studies_into_scans),
    ]
