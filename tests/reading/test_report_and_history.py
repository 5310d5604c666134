"""The case report, the history by study date, and two studies side by side."""

from datetime import date

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from cases.selectors import HISTORY_STUDIES_PER_PAGE
from inference.models import ModelVersion
from tests.fhir_api.studies import dicom_study
from tests.reading.studies import sign, study


@pytest.fixture
def suspicious(alice, patient):
    return study(patient, alice, suspicion=0.9, slices=3, study_date=date(2026, 11, 20))


def test_the_report_holds_patient_study_key_slices_ai_result_and_sign_off(client, alice, bob, suspicious):
    version = suspicious.predictions.get().model_version
    ModelVersion.objects.filter(pk=version.pk).update(
        metrics={**version.metrics, "source": "5-fold CV", "malignant_sensitivity": 0.97, "specificity": 0.81}
    )
    review = sign(suspicious, bob, "malignant", comment="refer to MDT")
    client.force_login(alice)
    response = client.get(reverse("cases:scan_report", args=[suspicious.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    patient = suspicious.patient
    for text in (
        patient.name,
        patient.mrn,
        "<dt>Study date</dt><dd>2026-11-20</dd>",
        "<dt>Slices</dt><dd>3</dd>",
        version.name,
        "Suspicious for malignancy.",
    ):
        assert text in body, text
    assert "malignant sensitivity 0.97" in body  # how good the model is, beside its result
    assert (
        body.count('class="overlay"') == 1 and body.count("<figure>") == 3
    )  # key slices, the heatmap over one
    assert "Signed by <strong>bob</strong>" in body and "refer to MDT" in body and "report-final" in body
    assert f'id="review-{review.pk}"' in body
    assert AuditEntry.objects.filter(object_type="report", object_id=suspicious.pk, user=alice).exists()


def test_an_unsigned_report_says_it_is_preliminary(client, alice, suspicious):
    client.force_login(alice)
    body = client.get(reverse("cases:scan_report", args=[suspicious.pk])).content.decode()
    assert "Preliminary: no clinician has signed" in body


def test_the_report_and_compare_are_scoped(client, charlie, alice, patient, suspicious):
    other = study(patient, alice, suspicion=0.1)
    client.force_login(charlie)
    assert client.get(reverse("cases:scan_report", args=[suspicious.pk])).status_code == 404
    compare = reverse("cases:patient_compare", args=[patient.pk])
    assert client.get(compare, {"a": suspicious.pk, "b": other.pk}).status_code == 404


def test_history_is_ordered_by_study_date_with_everything_under_its_study(client, alice, bob, patient):
    later_study = study(patient, alice, suspicion=0.9, study_date=date(2026, 6, 1))  # uploaded first
    earlier_study = study(patient, alice, suspicion=0.2, study_date=date(2025, 1, 5), slices=11)
    review = sign(earlier_study, bob, "benign", comment="stable")
    client.force_login(alice)
    body = client.get(patient.get_absolute_url()).content.decode()
    first = body.index(f'id="study-{later_study.study_id}"')
    second = body.index(f'id="study-{earlier_study.study_id}"')
    assert first < second < body.index(f'id="series-{earlier_study.pk}"')
    assert second < body.index(f'id="review-{review.pk}"')  # the review sits under its own study
    assert second < body.index(f'href="/predictions/{earlier_study.predictions.get().pk}/"')
    # Thumbnails open the viewer at their slice; past eight, "+3" opens the ninth.
    assert (
        f'href="/scans/{earlier_study.pk}/?slice=1"' in body
        and f'href="/scans/{earlier_study.pk}/?slice=8"' in body
    )
    assert f'href="/scans/{earlier_study.pk}/?slice=9"' in body and ">+3</a>" in body
    studies = client.get(reverse("api:patient-history", args=[patient.pk])).json()["results"]
    assert [study["id"] for study in studies] == [later_study.study_id, earlier_study.study_id]  # as the page
    assert [series["id"] for series in studies[1]["series"]] == [earlier_study.pk]
    assert studies[1]["series"][0]["slices"] == 11
    (prediction,) = studies[1]["series"][0]["predictions"]
    assert prediction["id"] == earlier_study.predictions.get().pk
    assert [(r["id"], r["comment"]) for r in prediction["reviews"]] == [(review.pk, "stable")]


def test_two_series_of_one_dicom_study_are_one_study_with_two_series(client, alice, patient):
    older = study(patient, alice, suspicion=0.2, study_date=date(2025, 1, 5))
    first, second = dicom_study(patient, alice, sizes=(3, 2), accession="A-78", study_date="20261102")
    assert first.study_id == second.study_id
    client.force_login(alice)
    studies = client.get(reverse("api:patient-history", args=[patient.pk])).json()
    assert studies["count"] == 2
    dicom, image = studies["results"]
    assert (dicom["id"], dicom["accession_number"]) == (first.study_id, "A-78")
    assert dicom["study_date"] == "2026-11-02"
    # Series newest first, each with its own prediction; the image upload is a study of one series.
    assert [s["id"] for s in dicom["series"]] == [second.pk, first.pk]
    assert [(s["series_number"], s["slices"]) for s in dicom["series"]] == [(3, 2), (2, 3)]
    assert [[p["id"] for p in s["predictions"]] for s in dicom["series"]] == [
        [second.predictions.get().pk],
        [first.predictions.get().pk],
    ]
    assert (image["id"], [s["id"] for s in image["series"]]) == (older.study_id, [older.pk])
    body = client.get(patient.get_absolute_url()).content.decode()
    assert body.count('class="card study"') == 2
    study_at = body.index(f'id="study-{first.study_id}"')
    assert study_at < body.index(f'id="series-{second.pk}"') < body.index(f'id="series-{first.pk}"')
    assert body.index(f'id="series-{first.pk}"') < body.index(f'id="study-{older.study_id}"')
    assert "Accession A-78" in body and "2 series" in body


def test_history_is_paged_by_study_latest_first(client, alice, patient):
    """21 studies: the page and the API show the latest 20, then the earliest on page 2."""
    dates = [date(2025, 1, 1 + i) for i in range(HISTORY_STUDIES_PER_PAGE + 1)]
    scans = {day: study(patient, alice, suspicion=0.3, study_date=day, slices=1) for day in reversed(dates)}
    earliest = scans[dates[0]]
    client.force_login(alice)
    url = reverse("api:patient-history", args=[patient.pk])
    first = client.get(url).json()
    assert first["count"] == len(dates) and first["next"].endswith("?page=2") and first["previous"] is None
    assert [s["study_date"] for s in first["results"]] == [d.isoformat() for d in reversed(dates[1:])]
    last = client.get(url, {"page": 2}).json()
    assert [s["id"] for s in last["results"]] == [earliest.study_id] and last["next"] is None
    assert client.get(url, {"page": 3}).status_code == 404
    page_one = client.get(patient.get_absolute_url()).content.decode()
    assert page_one.count('class="card study"') == HISTORY_STUDIES_PER_PAGE
    assert f'id="study-{earliest.study_id}"' not in page_one and 'href="?page=2"' in page_one
    page_two = client.get(patient.get_absolute_url(), {"page": 2}).content.decode()
    assert page_two.count('class="card study"') == 1 and f'id="study-{earliest.study_id}"' in page_two
    assert "Page 2 of 2" in page_two
    reads = AuditEntry.objects.filter(object_type="history", patient_id=patient.pk, user=alice)
    assert reads.count() == 4  # each page read, in the page and the API, names the patient (not page 3)


def test_two_studies_side_by_side(client, alice, patient):
    old = study(patient, alice, suspicion=0.2, study_date=date(2025, 1, 5))
    new = study(patient, alice, suspicion=0.8, study_date=date(2026, 1, 5))
    client.force_login(alice)
    page = client.get(patient.get_absolute_url()).content.decode()
    assert f'action="/patients/{patient.pk}/compare/"' in page
    response = client.get(reverse("cases:patient_compare", args=[patient.pk]), {"a": new.pk, "b": old.pk})
    body = response.content.decode()
    assert response.status_code == 200 and body.index("Study of 2026-01-05") < body.index(
        "Study of 2025-01-05"
    )
    assert f'href="/scans/{new.pk}/?slice=1"' in body and f'href="/scans/{old.pk}/?slice=1"' in body


@pytest.mark.parametrize("query", [{"a": "same", "b": "same"}, {"a": "x", "b": "1"}, {}])
def test_compare_refuses_what_it_cannot_compare_with_a_message(client, alice, patient, query):
    one = study(patient, alice, suspicion=0.2)
    client.force_login(alice)
    query = {k: (one.pk if v == "same" else v) for k, v in query.items()}
    response = client.get(reverse("cases:patient_compare", args=[patient.pk]), query, follow=True)
    assert response.status_code == 200 and response.redirect_chain[-1][0] == patient.get_absolute_url()
    assert 'class="message error"' in response.content.decode()


def test_a_study_of_another_patient_cannot_be_compared(client, alice, patient, team_a):
    from tests import factories

    mine = study(patient, alice, suspicion=0.2)
    other_patient = factories.PatientFactory(team=team_a)
    theirs = study(other_patient, alice, suspicion=0.2)
    client.force_login(alice)
    response = client.get(reverse("cases:patient_compare", args=[patient.pk]), {"a": mine.pk, "b": theirs.pk})
    assert response.status_code == 302
