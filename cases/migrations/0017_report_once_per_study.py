"""Every review has its study (0016 filled them), and the database holds one report per study;
in a migration of its own, because PostgreSQL will not alter a table in the transaction that
updated its rows under a deferred foreign key. Addenda: text added to a signed report."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0016_reviews_onto_studies"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="review",
            name="study",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="reviews",
                to="cases.study",
            ),
        ),
        migrations.AddIndex(
            model_name="review",
            index=models.Index(
                models.F("study"),
                models.F("kind"),
                models.OrderBy(models.F("created_at"), descending=True),
                models.OrderBy(models.F("id"), descending=True),
                name="review_study_latest",
            ),
        ),
        migrations.AddConstraint(
            model_name="review",
            constraint=models.UniqueConstraint(
                condition=models.Q(("kind", "report"), ("supersedes__isnull", True)),
                fields=("study",),
                name="report_once_per_study",
                violation_error_message="This study's report is already signed.",
            ),
        ),
        migrations.AddConstraint(
            model_name="review",
            constraint=models.CheckConstraint(
                condition=models.Q(("kind__in", ["report", "second_opinion"])), name="review_kind_valid"
            ),
        ),
        migrations.CreateModel(
            name="Addendum",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("text", models.TextField(max_length=4000)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                (
                    "author",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL
                    ),
                ),
                (
                    "report",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="addenda", to="cases.review"
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "addenda",
                "ordering": ["created_at", "id"],
            },
        ),
    ]
