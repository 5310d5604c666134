"""Writes for model versions: register a weights folder, activate one version."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction

from .artifacts import CARD_FILE, WEIGHTS_FILE, file_sha256
from .models import ModelVersion


class ModelVersionError(ValueError):
    """A weights folder that cannot be registered (missing files, unreadable card)."""


def _stored_dir(path: Path) -> str:
    """Relative to BASE_DIR when inside the project (so the row survives moving the checkout)."""
    base = Path(settings.BASE_DIR).resolve()
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def model_version_register(
    *, weights_dir: Path | str, name: str | None = None, activate: bool = False
) -> ModelVersion:
    """Register the weights in `weights_dir` (model.keras + card.json) as a model version.

    Idempotent: the same weights file (by SHA-256) gives back the existing row.
    """
    directory = Path(weights_dir).resolve()
    weights = directory / WEIGHTS_FILE
    card_path = directory / CARD_FILE
    if not weights.is_file():
        raise ModelVersionError(f"no {WEIGHTS_FILE} in {directory}")
    try:
        card = json.loads(card_path.read_text())
    except FileNotFoundError:
        raise ModelVersionError(f"no {CARD_FILE} in {directory}") from None
    except json.JSONDecodeError as exc:
        raise ModelVersionError(f"{card_path} is not valid JSON: {exc}") from None
    sha = file_sha256(weights)
    recorded = (card.get("weights") or {}).get("sha256")
    if recorded and recorded != sha:
        raise ModelVersionError(
            f"{weights} does not match its card (SHA-256 {sha[:12]}…, card says {recorded[:12]}…)"
        )
    version_name = name or card.get("name") or f"model-{sha[:12]}"
    try:
        with transaction.atomic():
            version, created = ModelVersion.objects.get_or_create(
                sha256=sha,
                defaults={
                    "name": version_name,
                    "weights_dir": _stored_dir(directory),
                    "metrics": card.get("metrics") or {},
                },
            )
    except IntegrityError:
        # A concurrent register of the same weights won the race; or the name is taken.
        existing = ModelVersion.objects.filter(sha256=sha).first()
        if existing is None:
            raise ModelVersionError(f"a model version named {version_name!r} already exists") from None
        version = existing
    if activate and not version.is_active:
        model_version_activate(version=version)
        version.refresh_from_db()
    return version


def model_version_activate(*, version: ModelVersion) -> None:
    """Make `version` the one active model version (atomic switch)."""
    with transaction.atomic():
        # Lock the rows being switched so two concurrent activations serialise.
        list(ModelVersion.objects.select_for_update().filter(is_active=True))
        ModelVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
        ModelVersion.objects.filter(pk=version.pk).update(is_active=True)
    version.is_active = True


def model_version_active() -> ModelVersion:
    """The active model version. Where no version exists at all, the shipped weights in
    settings.INFERENCE_WEIGHTS_DIR are registered and activated (idempotent, race-safe)."""
    version = ModelVersion.objects.filter(is_active=True).first()
    if version is not None:
        return version
    if not ModelVersion.objects.exists():
        try:
            model_version_register(weights_dir=settings.INFERENCE_WEIGHTS_DIR, activate=True)
        except IntegrityError:
            pass  # another process activated one at the same moment
    version = ModelVersion.objects.filter(is_active=True).first()
    if version is None:
        raise ModelVersion.DoesNotExist(
            "no model version is active; activate one in the admin or with "
            "`python manage.py register_model DIR --activate`"
        )
    return version
