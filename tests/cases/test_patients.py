from datetime import date

import pytest
from django.urls import reverse

from cases.models import Patient
from tests.factories import PatientFactory


def patient_data(**overrides):
    return {"mrn": "LP-0001", "name": "Ada Lovelace", "birth_date": "1950-12-10", "sex": "F", **overrides}


def test_create_patient_in_own_team(logged_in, team_a):
    response = logged_in.post(reverse("cases:patient_create"), patient_data(team=team_a.pk))
    patient = Patient.objects.get()
    assert response.status_code == 302 and response["Location"] == patient.get_absolute_url()
    assert (patient.team, patient.mrn, patient.birth_date) == (team_a, "LP-0001", date(1950, 12, 10))
    assert patient.created_by is not None and patient.created_by.username == "alice"


def test_mrn_is_unique_within_a_team_but_not_across_teams(logged_in, team_a, team_b):
    PatientFactory(team=team_b, mrn="LP-0001")
    assert logged_in.post(reverse("cases:patient_create"), patient_data(team=team_a.pk)).status_code == 302
    response = logged_in.post(reverse("cases:patient_create"), patient_data(team=team_a.pk, name="Other"))
    assert response.status_code == 200
    assert "already exists in this care team" in response.content.decode()
    assert Patient.objects.filter(mrn="LP-0001").count() == 2


def test_cannot_create_patient_in_someone_elses_team(logged_in, team_b):
    response = logged_in.post(reverse("cases:patient_create"), patient_data(team=team_b.pk))
    assert response.status_code == 200 and not Patient.objects.exists()


@pytest.mark.parametrize(
    "field,value", [("mrn", "../../x"), ("birth_date", "not a date"), ("name", ""), ("sex", "Z")]
)
def test_invalid_patient_data_is_refused(logged_in, team_a, field, value):
    response = logged_in.post(reverse("cases:patient_create"), patient_data(team=team_a.pk, **{field: value}))
    assert response.status_code == 200 and not Patient.objects.exists()


def test_edit_patient(logged_in, patient):
    response = logged_in.post(
        reverse("cases:patient_edit", args=[patient.pk]), patient_data(team=patient.team_id, name="New Name")
    )
    assert response.status_code == 302
    patient.refresh_from_db()
    assert patient.name == "New Name"


def test_patient_list_paginates_and_searches(logged_in, team_a):
    for i in range(30):
        PatientFactory(team=team_a, name=f"Person {i:02d}", mrn=f"X{i:03d}")
    page1 = logged_in.get(reverse("cases:patient_list")).content.decode()
    assert "Person 00" in page1 and "Person 29" not in page1 and "Page 1 of 2" in page1
    found = logged_in.get(reverse("cases:patient_list"), {"q": "X029"}).content.decode()
    assert "Person 29" in found and "Person 00" not in found


def test_patient_list_query_count_does_not_grow_with_rows(logged_in, team_a, django_assert_max_num_queries):
    for _ in range(3):
        PatientFactory(team=team_a)
    with django_assert_max_num_queries(9):
        logged_in.get(reverse("cases:patient_list"))
    for _ in range(20):
        PatientFactory(team=team_a)
    with django_assert_max_num_queries(9):
        logged_in.get(reverse("cases:patient_list"))


def test_birth_date_cannot_move_after_the_patients_studies(
    alice, patient, django_capture_on_commit_callbacks
):
    import datetime

    from django.core.exceptions import ValidationError

    from cases import services
    from tests.conftest import image_bytes, upload

    with django_capture_on_commit_callbacks(execute=False):
        services.scan_upload(
            patient=patient,
            files=[upload("a.png", image_bytes())],
            uploaded_by=alice,
            study_date=datetime.date(2000, 1, 1),
        )
    with pytest.raises(ValidationError, match="after the patient's first study"):
        services.patient_update(patient=patient, updated_by=alice, birth_date=datetime.date(2010, 1, 1))
    patient.refresh_from_db()
    assert patient.birth_date == datetime.date(1960, 5, 17)
