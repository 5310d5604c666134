"""The fast lane: tests are marked by what they start, so `make test-fast` can leave those out.

A test that asks for a real Celery worker is `worker`, one that drives Chromium is `browser`, one
that starts Orthanc is `slow` — read from the fixtures it uses, so a new test lands in the right
lane without anyone remembering a marker (tests that train carry `slow` by hand). `make test` and
CI run them all.
(Loaded by `-p tests.lanes` in pyproject's addopts.)"""

from __future__ import annotations

import pytest

LANES = {
    "worker": {"celery_worker_process"},
    "browser": {"chromium"},
    "slow": {"orthanc", "orthanc_server"},
}


def lanes_of(fixturenames: set[str]) -> set[str]:
    return {lane for lane, fixtures in LANES.items() if fixtures & fixturenames}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for lane in lanes_of(set(getattr(item, "fixturenames", ()))):
            item.add_marker(lane)
