"""Writes for model versions: register a weights folder, activate one version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from .artifacts import (
    CARD_FILE,
    WeightsIntegrityError,
    files_state,
    read_card,
    verified_hashes,
    version_sha256,
)
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
    """Register the weights in `weights_dir` (card.json and the weights files it names) as a model
    version, recording every file's SHA-256.

    Idempotent: the same weights (by SHA-256) give back the existing row.
    """
    directory = Path(weights_dir).resolve()
    card_path = directory / CARD_FILE
    try:
        card = json.loads(card_path.read_text())
    except FileNotFoundError:
        card = None
    except json.JSONDecodeError as exc:
        raise ModelVersionError(f"{card_path} is not valid JSON: {exc}") from None
    try:
        hashes = verified_hashes(directory, card or {})
    except (FileNotFoundError, WeightsIntegrityError) as exc:
        raise ModelVersionError(str(exc)) from None
    if card is None:
        raise ModelVersionError(f"no {CARD_FILE} in {directory}")
    sha = version_sha256(hashes)
    version_name = name or card.get("name") or f"model-{sha[:12]}"
    try:
        # Created and activated in one transaction: no other process may see a version that
        # exists but is not yet active, and find no active version at all (`model_version_active`).
        with transaction.atomic():
            version, created = ModelVersion.objects.get_or_create(
                sha256=sha,
                defaults={
                    "name": version_name,
                    "weights_dir": _stored_dir(directory),
                    "files": hashes,
                    "metrics": card.get("metrics") or {},
                },
            )
            if activate and not version.is_active:
                model_version_activate(version=version)
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


def model_version_predictor(version: ModelVersion) -> Any:
    """The loaded Predictor of `version` (TensorFlow: workers and commands only), its weights
    checked against the hashes the version recorded. Raises WeightsIntegrityError on a mismatch."""
    from .predictor import get_predictor

    predictor = get_predictor(version.weights_path, expected_hashes=version.files or None)
    if predictor.sha256 != version.sha256:
        raise WeightsIntegrityError(
            f"the weights of {version.name} were changed (SHA-256 {predictor.sha256[:12]}…, "
            f"recorded {version.sha256[:12]}…); refusing to classify with them"
        )
    return predictor


def model_version_verify(version: ModelVersion) -> str | None:
    """Why `version`'s weights cannot be used (missing or changed files), or None when they can.
    Hashes are recomputed only when a file changes on disk (for /healthz)."""
    directory = version.weights_path
    try:
        state = files_state(directory)
        key = (version.pk, version.sha256, state)
        if key not in _verified:
            hashes = verified_hashes(directory, read_card(directory), version.files or None)
            if version_sha256(hashes) != version.sha256:
                raise WeightsIntegrityError(f"the weights of {version.name} were changed")
            _verified.clear()
            _verified.add(key)
    except (OSError, ValueError) as exc:
        return str(exc)
    return None


_verified: set[tuple[Any, ...]] = set()
