"""The REST API: auth, every endpoint and method for owner, teammate, outsider, admin and anonymous."""

import pytest
from django.urls import reverse
from knox.models import AuthToken
from rest_framework.test import APIClient

from cases.models import Patient, Prediction, Scan
from tests.conftest import image_bytes, upload
from tests.factories import PASSWORD, PatientFactory


def api_as(request, who):
    client = APIClient()
    if who is not None:
        _, token = AuthToken.objects.create(request.getfixturevalue(who))
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


PEOPLE = [("alice", True), ("bob", True), ("charlie", False), ("admin_user", False), (None, None)]


READS = [
    ("api:patient-detail", "patient"),
    ("api:patient-history", "patient"),
    ("api:scan-detail", "scan"),
    ("api:prediction-detail", "prediction"),
    ("api:slice-file", "slice"),
    ("api:slice-thumbnail", "slice"),
    ("api:heatmap", "slice_result"),
]


@pytest.mark.parametrize("who,allowed", PEOPLE)
@pytest.mark.parametrize("url_name,kind", READS)
def test_object_reads_are_scoped_to_care_team(request, objects, url_name, kind, who, allowed):
    response = api_as(request, who).get(reverse(url_name, args=[objects[kind].pk]))
    expected = {True: 200, False: 404, None: 401}[allowed]
    assert response.status_code == expected
    if expected != 200:
        assert set(response.json()) == {"detail", "errors"}


@pytest.mark.parametrize("who,allowed", PEOPLE)
def test_patient_list_shows_only_own_teams(request, objects, who, allowed):
    response = api_as(request, who).get(reverse("api:patient-list"))
    if allowed is None:
        assert response.status_code == 401
        return
    ids = [p["id"] for p in response.json()["results"]]
    assert (objects["patient"].pk in ids) is allowed


@pytest.mark.parametrize("who,allowed", PEOPLE)
def test_patient_update_is_scoped(request, objects, who, allowed):
    response = api_as(request, who).patch(
        reverse("api:patient-detail", args=[objects["patient"].pk]), {"name": "Renamed"}, format="json"
    )
    assert response.status_code == {True: 200, False: 404, None: 401}[allowed]
    assert (Patient.objects.get().name == "Renamed") is bool(allowed)


@pytest.mark.parametrize("who,allowed", PEOPLE)
def test_scan_upload_is_scoped(request, objects, who, allowed):
    before = Scan.objects.count()
    response = api_as(request, who).post(
        reverse("api:patient-scans", args=[objects["patient"].pk]),
        {"files": [upload("a.png", image_bytes())]},
        format="multipart",
    )
    assert response.status_code == {True: 202, False: 404, None: 401}[allowed]
    assert Scan.objects.count() == before + (1 if allowed else 0)


@pytest.mark.parametrize("who,allowed", PEOPLE)
def test_rerun_is_scoped(request, objects, who, allowed):
    Prediction.objects.filter(pk=objects["prediction"].pk).update(
        status="failed", label="", p_normal=None, p_benign=None, p_malignant=None
    )
    response = api_as(request, who).post(reverse("api:prediction-rerun", args=[objects["prediction"].pk]))
    assert response.status_code == {True: 202, False: 404, None: 401}[allowed]
    assert (Prediction.objects.get().status == "queued") is bool(allowed)


@pytest.mark.parametrize("who,allowed", PEOPLE)
def test_apply_active_model_is_scoped(request, objects, who, allowed):
    response = api_as(request, who).post(reverse("api:scan-predictions", args=[objects["scan"].pk]))
    # The scan already has a prediction from the active model: insiders get a clear 400.
    assert response.status_code == {True: 400, False: 404, None: 401}[allowed]
    if allowed:
        assert "already has" in response.json()["errors"]["non_field_errors"][0]


@pytest.mark.parametrize("who,status", [("alice", 200), ("charlie", 200), ("admin_user", 200), (None, 401)])
def test_model_versions_need_login(request, objects, who, status):
    response = api_as(request, who).get(reverse("api:modelversion-list"))
    assert response.status_code == status
    if status == 200:
        versions = response.json()["results"]
        assert sum(v["is_active"] for v in versions) == 1
        assert "balanced_accuracy" in versions[0]["metrics"]


def test_token_login_use_and_logout(alice):
    client = APIClient()
    response = client.post(reverse("api:token"), {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    token = response.json()["token"]
    assert token not in {t.digest for t in AuthToken.objects.all()}  # stored hashed
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(reverse("api:patient-list")).status_code == 200
    assert client.post(reverse("api:logout")).status_code == 204
    assert client.get(reverse("api:patient-list")).status_code == 401


def test_token_login_refuses_bad_credentials(alice):
    response = APIClient().post(
        reverse("api:token"), {"username": "alice", "password": "wrong"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"]["non_field_errors"] == ["Unable to log in with these credentials."]


def test_expired_token_is_refused(alice, settings):
    from datetime import timedelta

    instance, token = AuthToken.objects.create(alice, expiry=timedelta(seconds=-1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(reverse("api:patient-list")).status_code == 401


def test_disabled_user_token_stops_working(request, alice):
    client = api_as(request, "alice")
    alice.is_active = False
    alice.save()
    assert client.get(reverse("api:patient-list")).status_code == 401


def test_token_login_is_locked_out_after_repeated_failures(alice, settings):
    client = APIClient()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(reverse("api:token"), {"username": "alice", "password": "nope"}, format="json")
    response = client.post(reverse("api:token"), {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert "Too many failed logins" in response.json()["detail"]
    assert response.json()["errors"] == {}


def test_login_is_throttled_with_retry_after(alice, settings):
    client = APIClient()
    responses = [
        client.post(reverse("api:token"), {"username": "alice", "password": "nope"}, format="json")
        for _ in range(12)
    ]
    assert responses[-1].status_code == 429
    assert int(responses[-1]["Retry-After"]) > 0
    assert "throttled" in responses[-1].json()["detail"].lower()


def test_create_patient_defaults_to_the_only_team(request, alice, team_a):
    response = api_as(request, "alice").post(
        reverse("api:patient-list"),
        {"mrn": "API-1", "name": "Rosalind Franklin", "birth_date": "1920-07-25", "sex": "F"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert Patient.objects.get(mrn="API-1").team == team_a
    assert response.json()["url"].endswith(reverse("api:patient-detail", args=[response.json()["id"]]))


def test_create_patient_needs_a_team_when_in_several(request, alice, team_b):
    team_b.members.add(alice)
    response = api_as(request, "alice").post(
        reverse("api:patient-list"), {"mrn": "API-2", "name": "X", "birth_date": "1990-01-01"}, format="json"
    )
    assert response.status_code == 400 and "team" in response.json()["errors"]


def test_create_patient_in_a_foreign_team_is_refused(request, alice, team_b):
    response = api_as(request, "alice").post(
        reverse("api:patient-list"),
        {"mrn": "API-3", "name": "X", "birth_date": "1990-01-01", "team": team_b.pk},
        format="json",
    )
    assert response.status_code == 400 and "team" in response.json()["errors"]
    assert not Patient.objects.filter(mrn="API-3").exists()


def test_duplicate_mrn_gives_a_field_error(request, patient):
    response = api_as(request, "alice").post(
        reverse("api:patient-list"),
        {"mrn": patient.mrn, "name": "Y", "birth_date": "1990-01-01"},
        format="json",
    )
    assert response.status_code == 400
    assert "already exists in this care team" in str(response.json()["errors"])


def test_patient_filters(request, alice, team_a):
    PatientFactory(team=team_a, mrn="F-1", name="Alan Turing")
    PatientFactory(team=team_a, mrn="F-2", name="Ada Byron")
    client = api_as(request, "alice")
    names = lambda **q: [p["name"] for p in client.get(reverse("api:patient-list"), q).json()["results"]]  # noqa: E731
    assert names(q="turing") == ["Alan Turing"]
    assert names(mrn="f-2") == ["Ada Byron"]
    assert names(latest_label="malignant") == []
    assert client.get(reverse("api:patient-list"), {"latest_label": "bogus"}).status_code == 400


def test_api_upload_refuses_bad_files_and_stores_nothing(request, patient, private_media):
    response = api_as(request, "alice").post(
        reverse("api:patient-scans", args=[patient.pk]),
        {"files": [upload("ok.png", image_bytes()), upload("bad.png", b"GIF89a not really")]},
        format="multipart",
    )
    assert response.status_code == 400
    assert any("bad.png" in m for m in response.json()["errors"]["files"])
    assert not Scan.objects.exists()
    assert not any(p.is_file() for p in private_media.rglob("*")) if private_media.exists() else True


def test_api_upload_answers_202_with_a_poll_url(request, patient):
    response = api_as(request, "alice").post(
        reverse("api:patient-scans", args=[patient.pk]),
        {"files": [upload("a.png", image_bytes()), upload("b.png", image_bytes())], "note": "api"},
        format="multipart",
    )
    assert response.status_code == 202
    body = response.json()
    assert body["prediction"]["status"] == "queued"
    assert body["prediction"]["url"].endswith(
        reverse("api:prediction-detail", args=[body["prediction"]["id"]])
    )
    assert len(body["scan"]["slices"]) == 2 and body["scan"]["note"] == "api"


def test_history_lists_studies_with_their_series_and_predictions(request, patient, scan):
    body = api_as(request, "bob").get(reverse("api:patient-history", args=[patient.pk])).json()
    assert (body["count"], body["next"], body["previous"]) == (1, None, None)
    (study,) = body["results"]
    assert study["id"] == scan.study_id
    assert study["url"].endswith(reverse("api:study-detail", args=[scan.study_id]))
    assert {"study_date", "study_time", "accession_number", "description", "priority"} <= set(study)
    (series,) = study["series"]
    assert (series["id"], series["slices"]) == (scan.pk, 2)
    assert [p["id"] for p in series["predictions"]] == [p.pk for p in scan.predictions.all()]


@pytest.mark.parametrize("url_name", ["api:patient-list", "api:modelversion-list"])
def test_list_query_counts_do_not_grow_with_rows(
    request, alice, team_a, url_name, django_assert_max_num_queries
):
    from inference.models import ModelVersion

    def add_rows(n):  # rows of the kind the endpoint lists
        for i in range(n):
            if url_name == "api:patient-list":
                PatientFactory(team=team_a)
            else:
                ModelVersion.objects.create(name=f"v-{n}-{i}", sha256=f"{n:032d}{i:032d}", weights_dir="x")

    client = api_as(request, "alice")
    client.get(reverse(url_name))  # warm up: registers the shipped model version
    add_rows(3)
    with django_assert_max_num_queries(6) as few:
        assert len(client.get(reverse(url_name)).json()["results"]) >= 3
    add_rows(20)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(client.get(reverse(url_name)).json()["results"]) >= 23


def test_schema_and_docs_are_for_logged_in_users_only(client, alice):
    assert client.get(reverse("schema")).status_code == 401
    docs = client.get(reverse("api-docs"))
    assert docs.status_code == 302 and docs["Location"].startswith(reverse("login"))
    client.force_login(alice)
    schema = client.get(reverse("schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    spec = schema.json()
    assert "/api/v1/patients/{id}/scans/" in spec["paths"]
    assert spec["components"]["securitySchemes"]["knoxApiToken"]["type"] == "apiKey"
    assert client.get(reverse("api-docs")).status_code == 200


def test_too_many_files_through_the_api_get_the_services_message(request, patient, settings):
    settings.UPLOAD_MAX_FILES = 2
    response = api_as(request, "alice").post(
        reverse("api:patient-scans", args=[patient.pk]),
        {"files": [upload(f"{i}.png", image_bytes()) for i in range(3)]},
        format="multipart",
    )
    assert response.status_code == 400 and "at most 2" in response.json()["errors"]["files"][0]
    assert not Scan.objects.exists()


def test_a_prediction_carries_its_study_result_and_the_models_figures(request, slice_result):
    """Integrations read the study result and how good the model is, beside the probabilities."""
    prediction = slice_result.prediction
    SliceResult = type(slice_result)
    SliceResult.objects.create(
        prediction=prediction,
        slice=prediction.scan.slices.last(),
        assessable=False,
        reason="the image is in colour; CT slices are grayscale",
    )
    type(prediction.model_version).objects.filter(pk=prediction.model_version_id).update(
        metrics={"malignant_sensitivity": 0.97, "specificity": 0.95, "source": "5-fold cross-validation"}
    )
    body = api_as(request, "alice").get(reverse("api:prediction-detail", args=[prediction.pk])).json()
    assert body["finding"] == "No sign of malignancy; most likely benign."
    assert body["suspicion"] == 0.1 and body["suspicious_slices"] == 0
    assert body["most_suspicious_slices"] == [slice_result.slice_id]
    assert body["model_performance"]["malignant_sensitivity"] == 0.97
    not_assessable = [r for r in body["slice_results"] if not r["assessable"]]
    assert len(not_assessable) == 1 and "colour" in not_assessable[0]["reason"]
    assert not_assessable[0]["label"] == "" and not_assessable[0]["probabilities"] is None


def test_the_prediction_page_shows_the_finding_suspicion_and_model_figures(client, alice, slice_result):
    prediction = slice_result.prediction
    type(prediction.model_version).objects.filter(pk=prediction.model_version_id).update(
        metrics={
            "malignant_sensitivity": 0.97,
            "specificity": 0.95,
            "balanced_accuracy": 0.59,
            "balanced_accuracy_sd": 0.06,
            "benign_vs_normal_auc": 0.62,
            "ece": 0.06,
            "source": "5-fold patient-grouped cross-validation",
        }
    )
    client.force_login(alice)
    page = client.get(prediction.get_absolute_url()).content.decode()
    assert "No sign of malignancy; most likely benign." in page
    assert "Suspicion of malignancy" in page and "10%" in page
    assert "malignant sensitivity 0.97, specificity 0.95" in page


def test_an_unknown_api_path_with_a_newline_still_answers_json(logged_in):
    response = logged_in.get("/api/v1/predictions/%C2%B6%0A/reviews/")
    assert response.status_code == 404 and response["Content-Type"] == "application/json"


def test_writes_with_a_format_suffix_answer_the_client_never_500(request, objects):
    """DRF routes `.json` to every action: the writes must take it as the reads do."""
    api = api_as(request, "alice")
    scan, prediction = objects["scan"], objects["prediction"]
    writes = [
        (reverse("api:patient-scans", args=[objects["patient"].pk]), {}),
        (reverse("api:scan-predictions", args=[scan.pk]), {}),
        (reverse("api:prediction-rerun", args=[prediction.pk]), {}),
        (reverse("api:prediction-reviews", args=[prediction.pk]), {"verdict": "bogus"}),
        (reverse("api:study-addendum", args=[scan.study_id]), {"text": ""}),
    ]
    for path, body in writes:
        response = api.post(path.rstrip("/") + ".json", body, format="json")
        assert response.status_code < 500 and response["Content-Type"].startswith("application/json"), path
