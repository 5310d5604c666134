"""Issue 12: the first minutes. `make run` ends with the address and the demo login (the demo
account keeps its password across runs), and the README's API session can be run twice: it looks
the patient up by MRN and registers it only if absent, and a refused step stops it loudly."""

import re
import subprocess
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse
from knox.models import AuthToken
from rest_framework.test import APIClient

from cases.management.commands.demo_account import TEAM, USERNAME
from cases.models import CareTeam, Patient
from tests.factories import PatientFactory

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def readme_session() -> str:
    start = README.index("A complete session with `curl`")
    return README[README.index("```sh\n", start) : README.index("\n```\n", start)]


@pytest.fixture
def api(alice):
    client = APIClient()
    _, token = AuthToken.objects.create(alice)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


# --- the README's API session -------------------------------------------------------------------


def test_readme_session_looks_the_patient_up_by_mrn_and_stops_on_a_refusal():
    session = readme_session()
    assert "set -euo pipefail" in session and "--fail-with-body" in session
    assert re.search(r'api GET "\$API/patients/\?mrn=EHR-1001"', session)
    assert 'if [ -z "$PATIENT" ]' in session  # registered only when the lookup found nobody


def test_the_mrn_lookup_finds_the_patient_a_first_run_registered(api, team_a):
    first = api.post(
        reverse("api:patient-list"),
        {"mrn": "EHR-1001", "name": "Jane Roe", "birth_date": "1961-03-14", "sex": "F"},
        format="json",
    )
    assert first.status_code == 201, first.json()
    PatientFactory(team=team_a, mrn="EHR-10010")  # a longer MRN that merely starts the same

    found = api.get(reverse("api:patient-list"), {"mrn": "EHR-1001"})
    assert found.status_code == 200
    assert [p["id"] for p in found.json()["results"]] == [first.json()["id"]]


def test_the_mrn_lookup_answers_an_empty_list_before_the_first_run(api):
    found = api.get(reverse("api:patient-list"), {"mrn": "EHR-1001"})
    assert found.status_code == 200 and found.json()["results"] == []


def test_registering_an_mrn_twice_is_refused_with_a_message(api, team_a):
    PatientFactory(team=team_a, mrn="EHR-1001")
    again = api.post(
        reverse("api:patient-list"),
        {"mrn": "EHR-1001", "name": "Jane Roe", "birth_date": "1961-03-14", "sex": "F"},
        format="json",
    )
    assert again.status_code == 400
    body = again.json()
    assert body["detail"] and "MRN already exists" in str(body["errors"])
    assert Patient.objects.filter(mrn="EHR-1001").count() == 1


# --- what `make run` prints about the demo login ------------------------------------------------


def printed_password(out: str) -> str | None:
    found = re.search(rf"username {USERNAME}  password (\S+)", out)
    return found.group(1) if found else None


def test_demo_account_is_made_once_and_keeps_its_password(db, capsys):
    call_command("demo_account")
    password = printed_password(capsys.readouterr().out)
    assert password is not None
    demo = get_user_model().objects.get(username=USERNAME)
    assert demo.check_password(password) and CareTeam.objects.filter(name=TEAM, members=demo).exists()

    call_command("demo_account")  # `make run` again: the README's session still logs in
    out = capsys.readouterr().out
    assert printed_password(out) is None
    assert "already exists" in out and "manage.py demo_account --reset" in out
    demo.refresh_from_db()
    assert demo.check_password(password)


def test_demo_account_reset_gives_a_new_password(db, capsys):
    call_command("demo_account")
    old = printed_password(capsys.readouterr().out)
    call_command("demo_account", "--reset")
    new = printed_password(capsys.readouterr().out)
    assert new is not None and new != old
    demo = get_user_model().objects.get(username=USERNAME)
    assert demo.check_password(new) and not demo.check_password(old or "")


def test_the_reset_hint_names_a_data_dir_other_than_the_default(db, capsys, settings, tmp_path):
    call_command("demo_account")
    capsys.readouterr()
    settings.DATA_DIR = tmp_path / "elsewhere"
    call_command("demo_account")
    assert (
        f"LUNGPORTAL_DATA_DIR={tmp_path / 'elsewhere'} .venv/bin/python manage.py" in capsys.readouterr().out
    )
    settings.DATA_DIR = (settings.BASE_DIR / "var").resolve()
    call_command("demo_account")
    assert "\n  New password: .venv/bin/python manage.py demo_account --reset" in capsys.readouterr().out


# --- bin/run ------------------------------------------------------------------------------------


def test_bin_run_ends_with_the_ready_block_and_is_valid_bash():
    subprocess.run(["bash", "-n", str(ROOT / "bin" / "run")], check=True)
    script = (ROOT / "bin" / "run").read_text()
    block = script[script.index("cat <<EOF") :]
    for line in ("LungPortal is ready: open $url", "$account", "Logs: $LOG_DIR/", "Ctrl-C stops"):
        assert line in block
    # Noise goes to the log files, never to the terminal.
    for command in ("manage.py migrate", '"$BIN/celery"', '"$BIN/gunicorn"'):
        line = next(line for line in script.splitlines() if command in line)
        continuation = script[script.index(line) :].split("\n\n")[0]
        assert "_LOG" in continuation, command


def test_production_gets_no_demo_account(settings, db):
    from io import StringIO

    settings.PRODUCTION = True
    out = StringIO()
    call_command("demo_account", stdout=out)
    assert "no demo account" in out.getvalue()
    assert not get_user_model().objects.filter(username=USERNAME).exists()
