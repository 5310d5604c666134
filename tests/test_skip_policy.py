"""CI fails when a test skips unless tests/skip_policy.py lists it for this database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import skip_policy

ROOT = Path(__file__).resolve().parent.parent

SAMPLE = """
import pytest

def test_runs():
    assert True

def test_needs_a_tool():
    pytest.skip("the tool is not installed")
"""


def run_sample(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # none of the project's options or plugins
    environment = {k: v for k, v in os.environ.items() if k != skip_policy.STRICT} | env
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(tmp_path / "pytest.ini"), "-p", "no:django"]
        + ["-p", "no:randomly", "-p", "tests.skip_policy", "-q", str(tmp_path)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_unlisted_skip_fails_a_strict_run_and_says_which(tmp_path):
    result = run_sample(tmp_path, LUNGPORTAL_STRICT_SKIPS="1")
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout
    assert "unexpected skips" in result.stdout
    assert "test_needs_a_tool: Skipped: the tool is not installed" in result.stdout


def test_a_module_that_skips_as_a_whole_fails_a_strict_run(tmp_path):
    (tmp_path / "test_gone.py").write_text('import pytest\npytest.importorskip("no_such_module_here")\n')
    result = run_sample(tmp_path, LUNGPORTAL_STRICT_SKIPS="1")
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout
    assert "test_gone.py" in result.stdout and "no_such_module_here" in result.stdout


def test_a_local_run_only_reports_the_skip(tmp_path):
    result = run_sample(tmp_path)
    assert result.returncode == pytest.ExitCode.OK, result.stdout
    assert "1 passed, 1 skipped" in result.stdout


def test_the_known_skips_are_postgresql_only_tests_on_sqlite(monkeypatch):
    name = "tests/cases/test_faults.py::test_dropped_database_connection_mid_task_is_retried"
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert skip_policy.expected(name)
    monkeypatch.setenv("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/lungportal")
    assert not skip_policy.expected(name)
    assert set(skip_policy.KNOWN_SKIPS.values()) == {"sqlite"}
    for nodeid in skip_policy.KNOWN_SKIPS:  # each listed test still exists
        path, name = nodeid.split("::")
        assert f"def {name}(" in (ROOT / path).read_text(), nodeid
