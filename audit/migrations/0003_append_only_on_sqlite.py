"""On SQLite too the database itself refuses to change or remove an audit entry, as 0002 does on
PostgreSQL; the model's managers go through the guarded queryset for Django's own writes.

Django's flush (the test suite's, between transactional tests) empties SQLite tables with DELETE,
which these triggers refuse: `audit/management/commands/flush.py` lifts them for its own
transaction only, as PostgreSQL's TRUNCATE passes its row triggers by. A later migration that
rebuilds this table on SQLite (most AlterField and RemoveField operations do) drops the triggers
with the old table and must create them again: tests/audit/test_records_kept.py notices."""

from django.db import migrations

TRIGGERS = {
    operation: (
        f"CREATE TRIGGER audit_entry_append_only_{operation.lower()} BEFORE {operation} "
        f"ON audit_auditentry BEGIN SELECT RAISE(ABORT, 'audit entries are append-only: {operation} "
        f"refused'); END"
    )
    for operation in ("UPDATE", "DELETE")
}
CREATE = list(TRIGGERS.values())
DROP = [f"DROP TRIGGER IF EXISTS audit_entry_append_only_{operation.lower()}" for operation in TRIGGERS]


def _on_sqlite(statements: list[str]):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "sqlite":
            for sql in statements:
                schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_trigger")]

    operations = [
        migrations.AlterModelOptions(
            name="auditentry",
            options={
                "base_manager_name": "objects",
                "ordering": ["-at", "-id"],
                "verbose_name_plural": "audit entries",
            },
        ),
        migrations.RunPython(_on_sqlite(CREATE), _on_sqlite(DROP)),
    ]
