"""Outbox fixtures: a live webhook receiver with an endpoint of team A subscribed to everything
(the webhook tests' own), a finished prediction of a DICOM series, and no PACS destination
(exports are recorded, nothing is sent)."""

from __future__ import annotations

import pytest

from tests.pacs.test_structured_report import dicom_scan, finished_prediction
from tests.webhooks.conftest import endpoint as endpoint  # noqa: F401  (fixtures, re-exported)
from tests.webhooks.conftest import local_hosts as local_hosts  # noqa: F401
from tests.webhooks.conftest import receiver as receiver  # noqa: F401


@pytest.fixture
def no_pacs(settings):
    settings.PACS_STOW_URL = ""
    settings.PACS_CSTORE = ""
    return settings


@pytest.fixture
def dicom_prediction(patient, no_pacs):
    return finished_prediction(dicom_scan(patient, slices=2))
