"""The printed case report's context: the patient's age at the study (not today's), the signed
reading before the AI appendix, and the running header's patient, escaped for its <style>."""

from __future__ import annotations

import re
from datetime import date

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from cases.models import Patient, Study
from cases.views import age_at
from tests.reading.studies import sign, study


@pytest.mark.parametrize(
    ("born", "on", "age"),
    [
        (date(1960, 5, 17), date(2020, 5, 16), 59),  # the day before the birthday
        (date(1960, 5, 17), date(2020, 5, 17), 60),  # on it
        (date(1960, 2, 29), date(2021, 2, 28), 60),  # a leap-day birth, in a common year
        (date(1960, 2, 29), date(2021, 3, 1), 61),
        (date(2026, 1, 1), date(2026, 1, 1), 0),
    ],
)
def test_age_at_a_day_counts_whole_years_to_it(born, on, age):
    assert age_at(born, on) == age


def report(client, user, scan):
    client.force_login(user)
    response = client.get(reverse("cases:scan_report", args=[scan.pk]))
    assert response.status_code == 200
    return response


def test_the_age_is_the_patients_at_the_study_date_not_today(client, alice, patient):
    Patient.objects.filter(pk=patient.pk).update(birth_date=date(1960, 5, 17))
    scan = study(patient, alice, suspicion=0.3, study_date=date(2020, 5, 16))
    response = report(client, alice, scan)
    assert response.context["study_date"] == date(2020, 5, 16)
    assert response.context["age_at_study"] == 59  # today the patient is older
    body = response.content.decode()
    assert "Age at study: 59" in body and "<dt>Age at study</dt><dd>59</dd>" in body


def test_the_study_date_is_the_study_records(client, alice, patient):
    """A study's series may carry their own dates; the report's date, and the age, are the study's."""
    scan = study(patient, alice, suspicion=0.3, study_date=date(2020, 5, 16))
    Study.objects.filter(pk=scan.study_id).update(study_date=date(2021, 6, 1))
    response = report(client, alice, scan)
    assert response.context["study_date"] == date(2021, 6, 1)
    assert response.context["age_at_study"] == 61
    assert "<dt>Study date</dt><dd>2021-06-01</dd>" in response.content.decode()


def test_the_signed_reading_opens_the_report_and_the_ai_follows_as_an_appendix(client, alice, bob, patient):
    """The issue's study: the AI says malignant; a reading signed malignant was amended to benign."""
    scan = study(patient, alice, suspicion=0.92, study_date=date(2026, 3, 2))
    first = sign(scan, bob, "malignant", comment="spiculated")
    amended = sign(scan, alice, "benign", comment="calcified granuloma", amends=first)
    response = report(client, alice, scan)
    assert response.context["report"] == amended
    assert response.context["report_versions"] == [first]
    body = response.content.decode()
    impression = body.index('id="impression-title"')
    appendix = body.index("Appendix: AI output, not a clinician's reading")
    assert impression < body.index('<p class="impression-label">Benign</p>') < appendix
    assert impression < body.index("Final (amended)") < body.index("calcified granuloma") < appendix
    assert impression < body.index(f'id="review-{first.pk}"') < appendix  # the corrected reading, below
    assert "Signed by <strong>alice</strong>" in body
    # The AI's output sits in the appendix only, in neutral type: no red headline.
    assert body.index("Suspicious for malignancy.") > appendix
    assert "label-malignant" not in body and "<meter" not in body
    assert re.search(r"92%; operating threshold \d+% \(at or above it\)", body)
    assert AuditEntry.objects.filter(object_type="report", object_id=scan.pk, user=alice).exists()


def test_an_unsigned_report_says_so_first(client, alice, patient):
    scan = study(patient, alice, suspicion=0.92)
    body = report(client, alice, scan).content.decode()
    preliminary = body.index("No signed reading yet — preliminary")
    assert body.index('id="impression-title"') < preliminary < body.index("Appendix: AI output")
    assert '@bottom-left { content: "Preliminary: no signed reading"; }' in body


def test_the_running_header_names_the_patient_in_a_nonced_style_that_nothing_escapes(client, alice, patient):
    name = 'Ann "x"; } </style><script>1</script> Ó\\Brien\nO\'Neil'
    Patient.objects.filter(pk=patient.pk).update(name=name)
    scan = study(patient, alice, suspicion=0.3, study_date=date(2026, 3, 2))
    response = report(client, alice, scan)
    body = response.content.decode()
    style = re.search(r'<style nonce="([^"]+)">(.*?)</style>', body, re.S)
    assert style is not None
    nonce, css = style.groups()
    assert f"'nonce-{nonce}'" in response.headers["Content-Security-Policy"]
    header = re.search(r"@top-left \{ content: (\"[^\"]*\"); \}", css)
    assert header is not None  # one CSS string: no quote in the name ended it
    assert re.fullmatch(r'"[A-Za-z0-9 .,:_\\-]*"', header.group(1))  # the rest hex-escaped
    assert unescape_css(header.group(1)) == f'"{name} \u00b7 MRN {patient.mrn}"'
    assert '@top-right { content: "Born 1960-05-17 \\b7  Study 2026-03-02"; }' in css
    assert "<script>1</script>" not in body  # and the page itself escapes the name as HTML


def unescape_css(text: str) -> str:
    """CSS string escapes read back: a hex escape ends at a space, which it consumes."""
    return re.sub(r"\\([0-9a-f]{1,6}) ?", lambda m: chr(int(m.group(1), 16)), text)


def test_the_report_stays_scoped_to_the_team(client, charlie, alice, patient):
    scan = study(patient, alice, suspicion=0.3)
    client.force_login(charlie)
    assert client.get(reverse("cases:scan_report", args=[scan.pk])).status_code == 404


def test_an_addendum_to_a_version_later_amended_stays_on_the_print(client, alice, patient):
    from cases import services

    scan = study(patient, alice, suspicion=0.92)
    first = sign(scan, alice, "malignant")
    services.addendum_add(study=scan.study, author=alice, text="Compared with the 2024 CT: new.")
    sign(scan, alice, "benign", amends=first)
    body = report(client, alice, scan).content.decode()
    appendix = body.index("Appendix: AI output, not a clinician's reading")
    assert body.index(f'id="review-{first.pk}"') < body.index("Compared with the 2024 CT: new.") < appendix
