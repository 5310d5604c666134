"""Issue 11: trivial 12-character passwords were accepted. Every way to set one must refuse them."""

import io
import re
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse

from tests.factories import PASSWORD

TRIVIAL = ["aaaaaaaaaaaa", "qwertyuiopas"]
REFUSAL = "too easy to guess"
GOOD = "Pulmonary-Nodule-42"


@pytest.mark.parametrize("password", TRIVIAL)
def test_password_change_page_refuses_trivial_passwords(client, alice, password):
    client.force_login(alice)
    response = client.post(
        reverse("password_change"),
        {"old_password": PASSWORD, "new_password1": password, "new_password2": password},
    )
    assert response.status_code == 200 and REFUSAL in response.content.decode()
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


@pytest.mark.parametrize("password", TRIVIAL)
def test_admin_add_user_refuses_trivial_passwords(client, admin_user, password):
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:auth_user_add"),
        {"username": "newbie", "password1": password, "password2": password, "usable_password": "true"},
    )
    assert response.status_code == 200 and REFUSAL in response.content.decode()
    assert not get_user_model().objects.filter(username="newbie").exists()


@pytest.mark.parametrize("password", TRIVIAL)
def test_admin_password_change_refuses_trivial_passwords(client, admin_user, alice, password):
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:auth_user_password_change", args=[alice.pk]),
        {"password1": password, "password2": password},
    )
    assert response.status_code == 200 and REFUSAL in response.content.decode()
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


@pytest.mark.parametrize("password", TRIVIAL)
def test_add_user_command_refuses_trivial_passwords(db, monkeypatch, password):
    monkeypatch.setenv("LUNGPORTAL_PASSWORD", password)
    with pytest.raises(CommandError, match=REFUSAL):
        call_command("add_user", "weak", "--team", "T")
    assert not get_user_model().objects.filter(username="weak").exists()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("password", TRIVIAL)
def test_createsuperuser_prompt_refuses_trivial_passwords(db, capsys, password):
    # Typed twice, refused, not bypassed ("N"), then a good one typed twice.
    prompts = mock.patch("getpass.getpass", side_effect=[password, password, GOOD, GOOD])
    with prompts, mock.patch("builtins.input", return_value="N"):
        call_command(
            "createsuperuser", username="root", email="root@example.org", interactive=True, stdin=Terminal()
        )
    assert REFUSAL in capsys.readouterr().err
    assert get_user_model().objects.get(username="root").check_password(GOOD)


@pytest.mark.parametrize("password", TRIVIAL)
def test_set_password_and_save_in_a_command_refuses_trivial_passwords(alice, password):
    alice.set_password(password)
    with pytest.raises(ValidationError, match=REFUSAL):
        alice.save()
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


def test_demo_account_gets_a_password_the_validators_accept(db, capsys):
    call_command("demo_account")
    password = re.search(r"password (\S+)", capsys.readouterr().out)
    assert password is not None
    demo = get_user_model().objects.get(username="demo")
    assert demo.check_password(password.group(1))
    validate_password(password.group(1), demo)


@pytest.mark.parametrize("password", ["abcdefghijkl", "123456789012", "alicealice12", "Password1234"])
def test_other_guessable_passwords_are_refused(alice, password):
    with pytest.raises(ValidationError, match=REFUSAL):
        validate_password(password, alice)


@pytest.mark.parametrize("password", [PASSWORD, GOOD, "Bronchus-Alveolus-77", "x" * 60 + "Gq7-vR2#mP9!"])
def test_passphrases_are_accepted(alice, password):
    validate_password(password, alice)
