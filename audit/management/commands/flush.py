"""Django's `flush`, able to empty the audit table on SQLite.

SQLite has no TRUNCATE: flush empties each table with DELETE, which the append-only triggers
refuse (migration 0003). Here they are lifted and put back inside the flush's own transaction, so
no other connection ever sees the table unguarded, and a failed flush leaves them as they were.
PostgreSQL's flush is a TRUNCATE, which its row triggers let by. It takes every table's lock in
one statement, so a transaction still writing (a worker storing a result) can deadlock it: the
server then aborts one of the two, and a flush it aborted is tried again.
(The test suite flushes between transactional tests; an operator's flush empties every table.)"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import CommandError
from django.core.management.commands import flush
from django.db import connections, transaction

from audit.models import AuditEntry

DEADLOCK_RETRIES = 5
TRANSIENT_SQLSTATES = {"40P01", "40001"}  # deadlock detected, serialization failure


def _transient(error: CommandError) -> bool:
    cause = error.__cause__
    while cause is not None:
        if getattr(cause, "sqlstate", None) in TRANSIENT_SQLSTATES:
            return True
        cause = cause.__cause__
    return False


class Command(flush.Command):
    def handle(self, **options: Any) -> None:
        connection = connections[options["database"]]
        if connection.vendor != "sqlite":
            self._truncate(**options)
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

    def _truncate(self, **options: Any) -> None:
        for attempt in range(1, DEADLOCK_RETRIES + 1):
            try:
                super().handle(**options)
                return
            except CommandError as error:
                if attempt == DEADLOCK_RETRIES or not _transient(error):
                    raise
                time.sleep(0.2 * attempt)  # let the other transaction finish
