"""When each result export is due, so that a sweep re-sends what a lost broker message or a dead
worker left behind. Exports pending or sending before this are due now: the next sweep sends them."""

from django.db import migrations, models
from django.utils import timezone


def due_now(apps, schema_editor):
    apps.get_model("pacs", "ResultExport").objects.filter(state__in=["pending", "sending"]).exclude(
        destination=""
    ).update(next_attempt_at=timezone.now())


class Migration(migrations.Migration):
    dependencies = [
        ("pacs", "0002_sender_addresses_tls_unmatched_detail"),
    ]

    operations = [
        migrations.AddField(
            model_name="resultexport",
            name="next_attempt_at",
            field=models.DateTimeField(blank=True, db_index=True, null=True),
        ),
        migrations.RunPython(due_now, migrations.RunPython.noop),
    ]
