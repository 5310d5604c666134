import getpass
import os
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cases.services import user_create


class Command(BaseCommand):
    help = (
        "Create a clinician (or, with --admin, a staff superuser) in a care team, creating the team if new."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--team", required=True, help="care team name; created if it does not exist")
        parser.add_argument("--admin", action="store_true", help="make the user a staff superuser")

    def handle(self, *args: Any, username: str, team: str, admin: bool, **options: Any) -> None:
        password = os.environ.get("LUNGPORTAL_PASSWORD")
        if not password:
            if not os.isatty(0):
                raise CommandError(
                    "Set LUNGPORTAL_PASSWORD or run interactively to be prompted for a password."
                )
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("The passwords do not match.")
        try:
            user = user_create(username=username, password=password, team_name=team, is_admin=admin)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        role = "admin" if admin else "clinician"
        self.stdout.write(self.style.SUCCESS(f"Created {role} {user.get_username()} in care team {team}."))
