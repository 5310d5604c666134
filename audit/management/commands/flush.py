"""Django's `flush`, able to empty the audit table on SQLite.

SQLite has no TRUNCATE: flush empties each table with DELETE, which the append-only triggers
refuse (migration 0003). Here they are lifted and put back inside the flush's own transaction, so
no other connection ever sees the table unguarded, and a failed flush leaves them as they were.
PostgreSQL's flush is a TRUNCATE, which its row triggers let by: nothing to do there.
(The test suite flushes between transactional tests; an operator's flush empties every table.)"""

from __future__ import annotations

from typing import Any

from django.core.management.commands import flush
from django.db import connections, transaction

from audit.models import AuditEntry


class Command(flush.Command):
    def handle(self, **options: Any) -> None:
        connection = connections[options["database"]]
        if connection.vendor != "sqlite":
            super().handle(**options)
            return
        with transaction.atomic(using=connection.alias):
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s",
                    [AuditEntry._meta.db_table],
                )
                triggers = cursor.fetchall()
                for name, _ in triggers:
                    cursor.execute(f"DROP TRIGGER {connection.ops.quote_name(name)}")
            super().handle(**options)
            with connection.cursor() as cursor:
                for _, sql in triggers:
                    cursor.execute(sql)
