import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from cases.models import CareTeam

USERNAME = "demo"
TEAM = "Demo care team"


class Command(BaseCommand):
    help = "Create (or reset) the demo clinician with a fresh random password and print the credentials."

    def handle(self, *args: Any, **options: Any) -> None:
        password = "-".join(secrets.token_urlsafe(6) for _ in range(3))
        user, _ = get_user_model().objects.get_or_create(username=USERNAME)
        user.set_password(password)
        user.save()
        team, _ = CareTeam.objects.get_or_create(name=TEAM)
        team.members.add(user)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo account: username {USERNAME}  password {password}  (care team {TEAM!r})"
            )
        )
