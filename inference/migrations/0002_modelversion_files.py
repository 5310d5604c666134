from django.db import migrations, models


def record_single_files(apps, schema_editor):
    """Versions registered before files were recorded held one model.keras: its hash is the sha256."""
    ModelVersion = apps.get_model("inference", "ModelVersion")
    for version in ModelVersion.objects.filter(files={}):
        version.files = {"model.keras": version.sha256}
        version.save(update_fields=["files"])


class Migration(migrations.Migration):
    dependencies = [("inference", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="modelversion",
            name="files",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="SHA-256 of every weights file, checked whenever the weights are loaded",
            ),
        ),
        migrations.AlterField(
            model_name="modelversion",
            name="sha256",
            field=models.CharField(
                help_text="identifies the weights: the file's SHA-256, or for an ensemble that of its members",
                max_length=64,
                unique=True,
                verbose_name="SHA-256",
            ),
        ),
        migrations.AlterField(
            model_name="modelversion",
            name="weights_dir",
            field=models.CharField(
                help_text="folder with the weights and card.json; relative to the project when inside it",
                max_length=500,
            ),
        ),
        migrations.AlterField(
            model_name="modelversion",
            name="metrics",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="measured performance from the model card (cross-validated for ensembles)",
            ),
        ),
        migrations.RunPython(record_single_files, migrations.RunPython.noop),
    ]
