"""The case report as Chromium prints it: the clinician's signed reading opens page 1, the AI output
follows as a labelled appendix, and every page names the patient (name, MRN, birth and study
dates) and says "Page i of n"."""

from __future__ import annotations

import io
import unicodedata
from datetime import date

import pytest
from django.urls import reverse

from cases.models import Patient, Scan, Study
from tests.browser.conftest import serious_accessibility_findings, sign_in
from tests.reading.studies import sign, study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

APPENDIX = "Appendix: AI output, not a clinician's reading"
# Findings long enough, with the study's indication and note, for the report to run onto page 2.
FINDINGS = "\n".join(
    f"{i}. Segment {i}: calcified granuloma, 6 mm, unchanged; no spiculation, no pleural effusion."
    for i in range(1, 22)
)


@pytest.fixture
def amended(alice, bob, patient):
    """The issue's study: the AI says malignant; a reading signed malignant, amended to benign."""
    Patient.objects.filter(pk=patient.pk).update(name="Ada O'Brien", birth_date=date(1950, 6, 30))
    scan = study(patient, alice, suspicion=0.92, study_date=date(2026, 3, 2), slices=4)
    Study.objects.filter(pk=scan.study_id).update(
        indication="Follow-up of a nodule found in 2025.\n" * 8, description="CT chest"
    )
    Scan.objects.filter(pk=scan.pk).update(note="Referred by the respiratory clinic.\n" * 8)
    first = sign(scan, bob, "malignant", comment="spiculated nodule")
    sign(scan, alice, "benign", comment=FINDINGS, amends=first)
    scan.patient.refresh_from_db()
    return scan


def printed(page, live_server, user, scan) -> list[str]:
    """The report printed to PDF as Chromium does it, each page's text with its spaces evened."""
    from pypdf import PdfReader

    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type in {"error", "warning"} else None)
    sign_in(page, live_server, user)
    page.goto(f"{live_server.url}{reverse('cases:scan_report', args=[scan.pk])}")
    page.wait_for_load_state("networkidle")
    assert serious_accessibility_findings(page) == []
    pdf = page.pdf(format="A4")
    assert problems == []  # the running header's nonced <style> is allowed by the CSP, among others
    # NFKC: the PDF's text has the font's ligatures ("ﬀ" in Tiﬀany), not the letters typed.
    return [
        " ".join(unicodedata.normalize("NFKC", p.extract_text()).split())
        for p in PdfReader(io.BytesIO(pdf)).pages
    ]


def test_the_printed_report_opens_with_the_reading_and_names_the_patient_on_every_page(
    page, live_server, alice, amended
):
    pages = printed(page, live_server, alice, amended)
    count = len(pages)
    assert count >= 2, "the report should run onto a second page for this test to mean anything"
    first = pages[0]
    signed = first.index("Signed by alice")
    assert first.index("Impression") < first.index("Final (amended)") < first.index("Benign") < signed
    assert APPENDIX not in first or signed < first.index(APPENDIX)
    assert "Age at study: 75" in first  # born 1950-06-30, studied 2026-03-02
    whole = " ".join(pages)
    assert whole.index("Impression") < whole.index(APPENDIX) < whole.index("Suspicious for malignancy.")
    assert "No signed reading yet" not in whole
    patient = amended.patient
    for number, text in enumerate(pages, start=1):
        assert patient.name in text and f"MRN {patient.mrn}" in text, f"page {number}: {text[:200]}"
        assert "Born 1950-06-30 · Study 2026-03-02" in text, f"page {number}: {text[:200]}"
        assert f"Page {number} of {count}" in text, f"page {number}"
        assert "Signed reading, amended" in text, f"page {number}"  # the state, at each page's foot


def test_an_unsigned_report_prints_as_preliminary_on_every_page(page, live_server, alice, patient):
    scan = study(patient, alice, suspicion=0.92, study_date=date(2026, 3, 2))
    pages = printed(page, live_server, alice, scan)
    assert pages[0].index("No signed reading yet — preliminary") < pages[0].index(APPENDIX)
    for number, text in enumerate(pages, start=1):
        assert "Preliminary: no signed reading" in text and f"Page {number} of {len(pages)}" in text
        assert patient.name in text and f"MRN {patient.mrn}" in text
