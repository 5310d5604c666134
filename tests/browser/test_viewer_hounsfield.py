"""The viewer on a DICOM series: it reads Hounsfield units, opens in the lung window, and the lung
and mediastinum presets apply (they are disabled for 8-bit slices)."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from pacs.ingest import study_upload
from pacs.synthetic import ct_series
from tests.browser.conftest import serious_accessibility_findings, sign_in
from tests.browser.test_viewer import canvas_pixels, open_viewer, wait_for_new_pixels

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def series_scan(patient, alice):
    """Three slices of air, lung, soft tissue and bone bands, in HU."""
    bands = np.concatenate(
        [np.full((32, 128), value, dtype=np.int16) for value in (-1000, -700, 40, 700)], axis=0
    )
    files = ct_series([bands, bands + 10, bands + 20], patient_id=patient.mrn, window=None)
    uploads = [SimpleUploadedFile(name, data, content_type="application/dicom") for name, data in files]
    return study_upload(patient=patient, files=uploads, uploaded_by=alice)[0]


def test_presets_apply_to_hounsfield_units(page, live_server, alice, series_scan):
    sign_in(page, live_server, alice)
    viewer = open_viewer(page, live_server, series_scan)
    assert (viewer.get_attribute("data-window-width"), viewer.get_attribute("data-window-center")) == (
        "1500",
        "-600",
    )  # a CT series opens in the lung window
    lung = canvas_pixels(page)
    mediastinum = page.locator("button[data-preset=mediastinum]")
    assert mediastinum.is_enabled() and page.locator("#viewer-hu-note").count() == 0
    mediastinum.click()
    page.wait_for_selector("[data-viewer][data-window-width='350'][data-window-center='50']")
    assert wait_for_new_pixels(page, lung) != lung
    page.locator("button[data-preset=lung]").click()
    page.wait_for_selector("[data-viewer][data-window-width='1500'][data-window-center='-600']")
    assert serious_accessibility_findings(page) == []
