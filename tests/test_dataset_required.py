"""Tests on real slices skip where the shared dataset is absent, except in CI: there
(`LUNGPORTAL_REQUIRE_DATASET=1`, set by `.ci/run`) a missing dataset fails the run, loudly."""

import os
import subprocess
import sys

import pytest

from tests.test_settings import ROOT

# One test per way the suite reaches the dataset: a fixture, a slice by name, a series, the folder.
NEEDS_THE_DATASET = [
    "tests/security/test_upload_stored_copy.py",
    "tests/pacs/test_receiving.py::test_a_series_without_a_name_waits",
    "tests/inference/test_cv.py::test_grouped_folds_on_the_shared_dataset",
    "tests/inference/test_assessability.py::test_every_generated_non_ct_image_is_caught_with_a_reason",
]


def run_without_the_dataset(tmp_path, *, required: bool) -> subprocess.CompletedProcess[str]:
    # A local run: neither CI's dataset rule nor its skip rule (tests/skip_policy.py).
    ci_only = ("LUNGPORTAL_REQUIRE_DATASET", "LUNGPORTAL_STRICT_SKIPS", "PYTEST_ADDOPTS")
    env = {k: v for k, v in os.environ.items() if k not in ci_only}
    env |= {
        "LUNGPORTAL_DATASET_DIR": str(tmp_path / "no-dataset"),
        "LUNGPORTAL_DATA_DIR": str(tmp_path / "data"),
        # Its own SQLite test database and broker: never this run's PostgreSQL test database.
        "DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'db.sqlite3'}",
        "REDIS_URL": "",
    }
    if required:
        env["LUNGPORTAL_REQUIRE_DATASET"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *NEEDS_THE_DATASET],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_ci_fails_loudly_without_the_dataset(tmp_path):
    result = run_without_the_dataset(tmp_path, required=True)
    assert result.returncode == 1, result.stdout[-3000:]
    assert " skipped" not in result.stdout.splitlines()[-1]
    assert "IQ-OTH/NCCD dataset is not at" in result.stdout and "LUNGPORTAL_REQUIRE_DATASET" in result.stdout


@pytest.mark.slow
def test_a_local_run_without_the_dataset_skips_saying_why(tmp_path):
    result = run_without_the_dataset(tmp_path, required=False)
    assert result.returncode == 0, result.stdout[-3000:]
    assert " failed" not in result.stdout.splitlines()[-1] and " skipped" in result.stdout.splitlines()[-1]
    assert "IQ-OTH/NCCD dataset is not at" in result.stdout
