"""End to end in headless Chromium: login → new patient → upload → result shown → logout,
against a live server and a real Celery worker."""

import re

import pytest

from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_clinician_classifies_a_slice_in_the_browser(page, live_server, worker, alice, tmp_path, dataset_dir):
    slice_path = dataset_dir / "malignant" / "Malignant case (1).jpg"

    page.goto(f"{live_server.url}/")
    assert "/accounts/login/" in page.url  # anonymous visitors are sent to log in
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Worklist')")

    page.click("text=New patient")
    page.fill("input[name=mrn]", "E2E-001")
    page.fill("input[name=name]", "Grace Hopper")
    page.fill("input[name=birth_date]", "1946-12-09")
    page.select_option("select[name=sex]", "F")
    page.click("button:has-text('Save')")
    page.wait_for_selector("h1:has-text('Grace Hopper')")

    page.click("text=Upload scan")
    page.set_input_files("input[name=files]", str(slice_path))
    page.click("button:has-text('Upload and classify')")
    page.wait_for_url(re.compile(r"/scans/\d+/$"))
    # The page polls and reloads itself when the worker finishes: no manual reload here.
    page.wait_for_selector(".status-succeeded", timeout=90_000)
    page.screenshot(path=str(tmp_path / "result.png"), full_page=True)
    assert page.locator(".probs .prob").count() >= 3
    # The viewer opens at the most suspicious slice, its heatmap laid over it.
    page.wait_for_selector("[data-viewer][data-ready=true][data-heatmap=on]")
    label = page.locator(".reading-panel .label").first.inner_text().lower()
    assert label in {"normal", "benign", "malignant"}

    page.click("text=Grace Hopper")
    page.wait_for_selector(".studies .status-succeeded")

    page.click("button:has-text('Log out')")
    page.goto(f"{live_server.url}/patients/")
    assert "/accounts/login/" in page.url
