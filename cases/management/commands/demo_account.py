import secrets
import shlex
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from cases.models import CareTeam

USERNAME = "demo"
TEAM = "Demo care team"


def reset_command() -> str:
    """The command that gives the demo account a new password, for this data directory."""
    command = ".venv/bin/python manage.py demo_account --reset"
    if Path(settings.DATA_DIR) != (settings.BASE_DIR / "var").resolve():
        return f"LUNGPORTAL_DATA_DIR={shlex.quote(str(settings.DATA_DIR))} {command}"
    return command


def credentials_message(*, password: str | None) -> str:
    """What `make run` prints about the demo login: the password when it was just set, else how
    to set a new one (an existing account keeps its password, so a restart breaks no session)."""
    if password is not None:
        return f"Demo account: username {USERNAME}  password {password}  (care team {TEAM!r})"
    return (
        f"Demo account: username {USERNAME} (it already exists; its password is the one printed when it "
        f"was made)\n  New password: {reset_command()}"
    )


class Command(BaseCommand):
    help = (
        "Create the demo clinician with a random password and print the credentials; "
        "an existing demo account keeps its password unless --reset is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reset", action="store_true", help="Give an existing demo account a new random password."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:  # a known login with a printed password has no place there
            self.stdout.write("Production: no demo account is made; add users with manage.py add_user.")
            return
        with transaction.atomic():
            user, created = get_user_model().objects.get_or_create(username=USERNAME)
            password = None
            if created or options["reset"] or not user.has_usable_password():
                password = "-".join(secrets.token_urlsafe(6) for _ in range(3))
                user.set_password(password)
                user.save()
            team, _ = CareTeam.objects.get_or_create(name=TEAM)
            team.members.add(user)
        self.stdout.write(self.style.SUCCESS(credentials_message(password=password)))
