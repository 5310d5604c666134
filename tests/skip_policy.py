"""Which tests may skip, in one place, and a run that fails when any other test skips.

A skipped test proves nothing, so CI (`LUNGPORTAL_STRICT_SKIPS=1`, set by `.ci/run`) treats an
unexpected skip as a failure: a missing tool, service or file must not turn a check into a pass.
The only expected skips are the PostgreSQL- and Redis-only tests on the SQLite pass, listed below.
(Loaded by `-p tests.skip_policy` in pyproject's addopts.)"""

from __future__ import annotations

import os

import pytest

STRICT = "LUNGPORTAL_STRICT_SKIPS"

# node id -> the pass in which it skips: "sqlite" is the embedded defaults (SQLite, a filesystem
# broker), where a test of something only PostgreSQL or Redis has cannot run.
KNOWN_SKIPS = {
    "tests/test_shared_cache.py::test_clearing_the_cache_keeps_the_brokers_keys": "sqlite",
    "tests/cases/test_faults.py::test_dropped_database_connection_mid_task_is_retried": "sqlite",
    "tests/audit/test_records_kept.py::test_flush_on_postgresql_is_tried_again_when_a_writer_deadlocks_it": (
        "sqlite"
    ),
}

_unexpected: list[str] = []


def strict() -> bool:
    return os.environ.get(STRICT, "").strip().lower() not in ("", "0", "false", "no")


def database() -> str:
    """The database this run uses, as settings_test picks it: PostgreSQL where DATABASE_URL says so."""
    return "postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite"


def expected(nodeid: str) -> bool:
    return KNOWN_SKIPS.get(nodeid) == database()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail") and not expected(report.nodeid):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _unexpected.append(f"{report.nodeid}: {reason}")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """A module that skips as a whole (importorskip, allow_module_level) skips every test in it."""
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _unexpected.append(f"{report.nodeid}: {reason}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if strict() and _unexpected:
        terminalreporter.section("unexpected skips (tests/skip_policy.py)", red=True, bold=True)
        for line in _unexpected:
            terminalreporter.line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if strict() and _unexpected and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
