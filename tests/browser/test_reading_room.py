"""The reading room in Chromium: worklist order, sign-off and amendment, the report's print
rendering, axe-core on every main page, and the 390 px layout."""

from __future__ import annotations

import re
from datetime import date

import pytest
from django.urls import reverse

from cases.models import Review
from tests import factories
from tests.browser.conftest import PHONE, new_page, serious_accessibility_findings, sign_in
from tests.reading.studies import sign, study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def ward(alice, bob, patient):
    """A patient with three studies: one read, one highly and one barely suspicious."""
    read = study(patient, alice, suspicion=0.97, study_date=date(2026, 5, 1))
    sign(read, bob, "malignant", comment="known primary")
    return {
        "read": read,
        "calm": study(patient, alice, suspicion=0.05, study_date=date(2026, 11, 2), slices=3),
        "suspicious": study(patient, alice, suspicion=0.88, study_date=date(2026, 9, 1), slices=3),
    }


def main_pages(patient, ward):
    scan = ward["suspicious"]
    return {
        "worklist": reverse("cases:dashboard"),
        "patients": reverse("cases:patient_list"),
        "patient": patient.get_absolute_url(),
        "new patient": reverse("cases:patient_create"),
        "upload": reverse("cases:scan_upload", args=[patient.pk]),
        "scan": scan.get_absolute_url(),
        "prediction": scan.predictions.get().get_absolute_url(),
        "report": reverse("cases:scan_report", args=[scan.pk]),
        "compare": reverse("cases:patient_compare", args=[patient.pk]) + f"?a={scan.pk}&b={ward['calm'].pk}",
        "password": reverse("password_change"),
    }


def test_worklist_puts_unread_and_suspicious_first(page, live_server, alice, ward):
    sign_in(page, live_server, alice)
    page.goto(f"{live_server.url}/")
    rows = page.locator("table.worklist tbody tr")
    links = [rows.nth(i).locator("td[data-label=Study] a").get_attribute("href") for i in range(rows.count())]
    assert links == [ward[n].get_absolute_url() for n in ("suspicious", "calm", "read")]
    assert rows.nth(2).locator(".reading-final").inner_text() == "Final"
    page.select_option("select[name=reading]", "unread")
    page.click("button:has-text('Filter')")
    page.wait_for_url(re.compile(r"reading=unread"))
    assert page.locator("table.worklist tbody tr").count() == 2


def test_sign_off_then_amend_beside_the_images(page, live_server, alice, bob, ward):
    scan = ward["suspicious"]
    sign_in(page, live_server, bob)
    page.goto(f"{live_server.url}{scan.get_absolute_url()}")
    form = page.locator("form.reading-form")
    assert form.locator("input[type=radio]:checked").count() == 0  # nothing chosen at first
    images, panel = (
        page.locator(".reading-images").bounding_box(),
        page.locator(".reading-panel").bounding_box(),
    )
    assert panel["x"] >= images["x"] + images["width"] - 1  # beside the images, not below them
    # Keyboard only: into the group, choose with the arrows, comment, sign.
    form.locator("input[value=normal]").focus()
    page.keyboard.press("ArrowDown")  # radios move with the arrow keys: normal → benign
    assert form.locator("input[value=benign]").is_checked()
    form.locator("input[value=malignant]").check()
    form.locator("textarea").fill("spiculated 14 mm nodule")
    form.locator("button:has-text('Sign reading')").click()
    page.wait_for_selector(".message.success")
    record = page.locator(".reading-record").first
    assert "Final" in record.locator(".reading").inner_text() and "Signed by bob" in record.inner_text()
    first = Review.objects.get(prediction__scan=scan)

    sign_in(page, live_server, alice)
    page.goto(f"{live_server.url}{scan.get_absolute_url()}")
    form = page.locator("form.reading-form")
    form.locator("select[name=supersedes]").select_option(str(first.pk))
    form.locator("input[value=benign]").check()
    form.locator("textarea").fill("calcified: benign on review")
    form.locator("button:has-text('Sign reading')").click()
    page.wait_for_selector(".reading-amended")
    assert page.locator(".reading-record.superseded").count() == 1
    assert "Signed by alice" in page.locator(".reading-record:not(.superseded)").inner_text()
    assert Review.objects.get(supersedes=first).label == "benign"
    first.refresh_from_db()
    assert first.label == "malignant"


def test_the_report_prints_without_the_portal_around_it(page, live_server, alice, ward, tmp_path):
    sign_in(page, live_server, alice)
    page.goto(f"{live_server.url}{reverse('cases:scan_report', args=[ward['read'].pk])}")
    assert page.locator(".topbar").is_visible() and page.locator("button[data-print]").is_visible()
    page.emulate_media(media="print")
    assert not page.locator(".topbar").is_visible() and not page.locator("button[data-print]").is_visible()
    assert not page.locator("footer").is_visible()
    assert page.locator(".report-final").is_visible() and page.locator(".key-slices figure").count() == 2
    assert page.locator("text=Signed by bob").is_visible()
    pdf = page.pdf(format="A4", path=str(tmp_path / "report.pdf"))
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    assert 1 <= pages <= 2, f"the report prints on {pages} pages"


def test_no_serious_accessibility_findings_on_the_main_pages(page, live_server, alice, patient, ward):
    found = {}
    anonymous = new_page(page.context.browser)
    anonymous.goto(f"{live_server.url}/accounts/login/")
    found["login"] = serious_accessibility_findings(anonymous)
    anonymous.context.close()
    sign_in(page, live_server, alice)
    for name, url in main_pages(patient, ward).items():
        page.goto(f"{live_server.url}{url}")
        page.wait_for_load_state("networkidle")
        found[name] = serious_accessibility_findings(page)
    assert {name: issues for name, issues in found.items() if issues} == {}


def test_staff_pages_have_no_serious_accessibility_findings(page, live_server, team_a):
    staff = factories.UserFactory(username="ward-admin", is_staff=True, teams=[team_a])
    sign_in(page, live_server, staff)
    page.goto(f"{live_server.url}{reverse('cases:agreement')}")
    assert serious_accessibility_findings(page) == []


def test_main_pages_fit_a_390_px_phone(chromium, live_server, alice, patient, ward):
    phone = new_page(chromium, viewport=PHONE)
    sign_in(phone, live_server, alice)
    overflowing = {}
    for name, url in main_pages(patient, ward).items():
        phone.goto(f"{live_server.url}{url}")
        phone.wait_for_load_state("networkidle")
        width = phone.evaluate("document.documentElement.scrollWidth")
        logout = phone.locator("button:has-text('Log out')").bounding_box()
        if width > PHONE["width"] or logout is None or logout["x"] + logout["width"] > PHONE["width"]:
            overflowing[name] = (width, logout)
        probabilities = phone.locator(".prob-value")
        for i in range(probabilities.count()):
            box = probabilities.nth(i).bounding_box()
            if box and box["x"] + box["width"] > PHONE["width"]:
                overflowing[f"{name}: probability {i}"] = box
    phone.context.close()
    assert overflowing == {}
