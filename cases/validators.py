"""Plausible clinical dates: none before 1900 and none in the future."""

from __future__ import annotations

from datetime import date, timedelta

from django.core.exceptions import ValidationError
from django.utils import timezone

EARLIEST = date(1900, 1, 1)
# A day of slack: "today" at a hospital east of the server's time zone is already tomorrow here.
FUTURE_SLACK = timedelta(days=1)


def plausible_date(value: date) -> None:
    if value < EARLIEST:
        raise ValidationError(f"Enter a date from {EARLIEST:%Y-%m-%d} on.", code="too_early")
    if value > timezone.localdate() + FUTURE_SLACK:
        raise ValidationError("Enter a date that is not in the future.", code="future")
