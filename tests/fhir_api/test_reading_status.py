"""In FHIR the clinician's reading is the authority: a signed reading is a `final` DiagnosticReport
(`amended` when it corrects one) with the reading's conclusion, while the AI's result stays a
`preliminary` report of its own, whatever the reading says."""

from __future__ import annotations

import pytest
from fhir.resources.R4B import get_fhir_model_class
from knox.models import AuthToken
from rest_framework.test import APIClient

from tests.reading.studies import sign, study

pytestmark = pytest.mark.django_db


def search(user, **params):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {AuthToken.objects.create(user)[1]}")
    response = client.get("/fhir/DiagnosticReport", params)
    assert response.status_code == 200, response.content[:500]
    bundle = response.json()
    get_fhir_model_class("Bundle").model_validate(bundle)
    return {entry["resource"]["id"]: entry["resource"] for entry in bundle.get("entry", [])}


def code(report):
    return report["conclusionCode"][0]["coding"][0]["code"]


def test_a_benign_reading_of_a_malignant_ai_result_is_the_final_report(alice, patient):
    scan = study(patient, alice, suspicion=0.9)  # the AI: malignant
    prediction = scan.predictions.get()
    reading = sign(scan, alice, "benign", comment="Calcified granuloma.")
    reports = search(alice, patient=f"Patient/{patient.pk}")
    ai, signed = reports[f"prediction-{prediction.pk}"], reports[f"review-{reading.pk}"]
    assert (signed["status"], code(signed)) == ("final", "benign")
    assert signed["conclusion"] == (
        "Benign; the reader corrects the AI result (Malignant). Calcified granuloma."
    )
    # The AI's own report is unchanged by the reading: still preliminary, still its label.
    assert (ai["status"], code(ai)) == ("preliminary", "malignant")
    assert "not signed by a clinician" in ai["text"]["div"]
    # Asking for signed reports gives the reading alone, and its label.
    signed_only = search(alice, patient=f"Patient/{patient.pk}", status="final,amended")
    assert (
        list(signed_only) == [f"review-{reading.pk}"]
        and code(signed_only[f"review-{reading.pk}"]) == "benign"
    )


def test_a_correction_is_amended_with_its_own_conclusion_and_the_ai_stays_preliminary(alice, bob, patient):
    scan = study(patient, alice, suspicion=0.9)
    first = sign(scan, alice, "malignant")
    correction = sign(scan, bob, "benign", amends=first, comment="Old granuloma on review.")
    reports = search(alice, patient=f"Patient/{patient.pk}")
    amended = reports[f"review-{correction.pk}"]
    assert (amended["status"], code(amended)) == ("amended", "benign")
    assert amended["conclusion"].startswith("Benign; the reader corrects the AI result (Malignant).")
    assert amended["conclusion"].endswith("Old granuloma on review.")
    assert reports[f"prediction-{scan.predictions.get().pk}"]["status"] == "preliminary"
    assert search(alice, status="preliminary").keys() == {f"prediction-{scan.predictions.get().pk}"}


def test_an_unsigned_ai_result_is_only_preliminary(alice, patient):
    study(patient, alice, suspicion=0.9)
    reports = search(alice, patient=f"Patient/{patient.pk}")
    assert [report["status"] for report in reports.values()] == ["preliminary"]
    assert search(alice, status="final,amended") == {}


def test_another_teams_readings_are_not_found(alice, charlie, patient):
    sign(study(patient, alice, suspicion=0.9), alice, "benign")
    assert search(charlie, status="final,amended,preliminary") == {}


def test_a_second_opinion_is_no_diagnostic_report(alice, bob, patient):
    scan = study(patient, alice, suspicion=0.9)
    report = sign(scan, alice, "malignant")
    opinion = sign(scan, bob, "benign", kind="second_opinion")
    reports = search(alice, patient=f"Patient/{patient.pk}")
    assert f"review-{report.pk}" in reports and f"review-{opinion.pk}" not in reports
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {AuthToken.objects.create(alice)[1]}")
    assert client.get(f"/fhir/DiagnosticReport/review-{opinion.pk}").status_code == 404
