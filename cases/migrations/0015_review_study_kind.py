"""Readings move to the study: each review gains its study (filled by 0016) and a kind, the study's
report or a second opinion. Columns only; the constraint that a study has one report comes in 0017,
once 0016 has made the existing rows keep it."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0014_slice_sop_instance_uid_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="review",
            name="study",
            field=models.ForeignKey(
                null=True,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="reviews",
                to="cases.study",
            ),
        ),
        migrations.AddField(
            model_name="review",
            name="kind",
            field=models.CharField(
                choices=[("report", "Report"), ("second_opinion", "Second opinion")],
                default="report",
                help_text="the study's signed report, or another reader's second opinion",
                max_length=16,
            ),
        ),
    ]
