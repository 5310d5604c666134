"""Every scan now belongs to a study (0012 filled them); in a migration of its own, because PostgreSQL
will not alter a table in the transaction that updated its rows under a deferred foreign key."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0012_study"),
    ]

    operations = [
        migrations.AlterField(
            model_name="scan",
            name="study",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="series", to="cases.study"
            ),
        ),
    ]
