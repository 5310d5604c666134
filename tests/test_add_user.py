import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from cases.models import CareTeam


@pytest.mark.django_db
def test_add_user_creates_user_and_team(monkeypatch, capsys):
    monkeypatch.setenv("LUNGPORTAL_PASSWORD", "Bronchus-Alveolus-77")
    call_command("add_user", "dana", "--team", "Thoracic")
    user = get_user_model().objects.get(username="dana")
    assert user.check_password("Bronchus-Alveolus-77") and not user.is_staff
    assert list(CareTeam.objects.get(name="Thoracic").members.all()) == [user]
    assert "Created clinician dana in care team Thoracic" in capsys.readouterr().out


@pytest.mark.django_db
def test_add_user_admin_and_existing_team(monkeypatch):
    CareTeam.objects.create(name="Thoracic")
    monkeypatch.setenv("LUNGPORTAL_PASSWORD", "Bronchus-Alveolus-77")
    call_command("add_user", "erin", "--team", "Thoracic", "--admin")
    user = get_user_model().objects.get(username="erin")
    assert user.is_staff and user.is_superuser
    assert CareTeam.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("password,message", [("short", "too short"), ("password123456", "too common")])
def test_add_user_rejects_weak_passwords(monkeypatch, password, message):
    monkeypatch.setenv("LUNGPORTAL_PASSWORD", password)
    with pytest.raises(CommandError, match=message):
        call_command("add_user", "weak", "--team", "T")
    assert not get_user_model().objects.filter(username="weak").exists()


@pytest.mark.django_db
def test_add_user_refuses_a_duplicate(monkeypatch):
    monkeypatch.setenv("LUNGPORTAL_PASSWORD", "Bronchus-Alveolus-77")
    call_command("add_user", "dana", "--team", "T")
    with pytest.raises(CommandError, match="already exists"):
        call_command("add_user", "dana", "--team", "T")
