"""Every review gets its study (its prediction's scan's study), and each study keeps one report.

No row is removed or rewritten beyond these two columns. Where a study already holds more than one
original report (two clinicians both signed a "final" reading, which the old rule allowed: one per
reviewer and prediction), the earliest original stays the study's report and every later one
becomes a second opinion, together with the corrections that supersede it (a correction is of the
kind of the review it corrects). Who signed what, when, and with which label stays as it was
(tests/cases/test_study_report.py checks the counts and the demotion)."""

from django.db import migrations
from django.db.models import OuterRef, Subquery

BATCH = 1000


def reviews_onto_studies(apps, schema_editor):
    Review = apps.get_model("cases", "Review")
    Prediction = apps.get_model("cases", "Prediction")
    Review.objects.update(
        study_id=Subquery(Prediction.objects.filter(pk=OuterRef("prediction_id")).values("scan__study_id")[:1])
    )
    reported = set()
    later = []
    originals = (
        Review.objects.filter(supersedes__isnull=True)
        .order_by("study_id", "created_at", "id")
        .values_list("id", "study_id")
    )
    for review_id, study_id in originals.iterator(chunk_size=2000):
        if study_id in reported:
            later.append(review_id)
        else:
            reported.add(study_id)
    if not later:
        return
    correction_of = dict(
        Review.objects.filter(supersedes__isnull=False).values_list("supersedes_id", "id").iterator(chunk_size=2000)
    )
    demoted = []
    for review_id in later:
        while review_id is not None:
            demoted.append(review_id)
            review_id = correction_of.get(review_id)
    for start in range(0, len(demoted), BATCH):
        Review.objects.filter(pk__in=demoted[start : start + BATCH]).update(kind="second_opinion")


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0015_review_study_kind"),
    ]

    operations = [
        migrations.RunPython(reviews_onto_studies, migrations.RunPython.noop),
    ]
