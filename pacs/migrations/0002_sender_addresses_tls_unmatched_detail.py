# Senders are bound to the addresses they connect from (existing ones get none: nobody, until an
# admin says where each connects from) and may carry a TLS certificate; unmatched series say why.

import pacs.models
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('pacs', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='dicomnode',
            name='addresses',
            field=models.CharField(default='', help_text='IP addresses or networks (CIDR) it connects from, separated by commas or spaces: 10.1.2.3, 10.1.8.0/24', max_length=1000, validators=[pacs.models.validate_networks]),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name='dicomnode',
            name='tls_certificate',
            field=models.TextField(blank=True, help_text='required with DICOM TLS: the PEM of the certificate it presents (pinned), or of the CA that issues it (any certificate of that CA is then accepted for this AE title and addresses)', validators=[pacs.models.validate_certificates], verbose_name='TLS certificate'),
        ),
        migrations.AddField(
            model_name='unmatchedseries',
            name='detail',
            field=models.TextField(blank=True, help_text="exactly why it waits (seen by the team's clinicians)"),
        ),
        migrations.AlterField(
            model_name='unmatchedseries',
            name='reason',
            field=models.CharField(choices=[('unknown', 'no patient with this PatientID in the team'), ('ambiguous', 'more than one patient could match'), ('mismatch', 'the header disagrees with the patient it was sent for'), ('no_birth_date', 'no birth date in the header to confirm the patient'), ('other_birth_date', "the birth date differs from the patient's"), ('no_name', 'no name in the header to confirm the patient'), ('other_name', "the name differs from the patient's")], max_length=16),
        ),
    ]
