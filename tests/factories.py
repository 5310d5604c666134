from datetime import date
from typing import Any

import factory
from django.contrib.auth import get_user_model

from cases.models import CareTeam, Patient

PASSWORD = "correct-horse-battery-staple"


class CareTeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CareTeam
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"Team {n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def teams(self: Any, create: bool, extracted: Any, **kwargs: Any) -> None:
        # factory_boy calls this with the built user as `self`.
        self.save()
        for team in extracted or []:
            team.members.add(self)


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient

    team = factory.SubFactory(CareTeamFactory)
    mrn = factory.Sequence(lambda n: f"MRN{n:05d}")
    name = factory.Faker("name")
    birth_date = date(1960, 5, 17)
    sex = Patient.Sex.FEMALE
