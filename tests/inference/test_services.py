"""Model versions: register by SHA-256, one active at a time, the shipped weights by default."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from django.db import IntegrityError, transaction

from inference.artifacts import version_sha256
from inference.models import ModelVersion
from inference.services import (
    ModelVersionError,
    model_version_activate,
    model_version_active,
    model_version_register,
)

pytestmark = pytest.mark.django_db


def make_weights_dir(root: Path, name: str, payload: bytes, **card: object) -> Path:
    """A model directory with stand-in weights bytes: registration only hashes the file."""
    root.mkdir(parents=True)
    (root / "model.keras").write_bytes(payload)
    body = {
        "name": name,
        "weights": {"sha256": hashlib.sha256(payload).hexdigest()},
        "metrics": {"balanced_accuracy": 0.5, "accuracy": 0.6, "per_class": {}},
        **card,
    }
    (root / "card.json").write_text(json.dumps(body))
    return root


def test_register_reads_the_card_and_hashes_the_weights(tmp_path: Path) -> None:
    directory = make_weights_dir(tmp_path / "m1", "first", b"weights-1")
    version = model_version_register(weights_dir=directory)
    assert version.name == "first"
    assert version.sha256 == hashlib.sha256(b"weights-1").hexdigest()
    assert version.metrics["balanced_accuracy"] == 0.5
    assert version.balanced_accuracy == 0.5
    assert version.weights_path == directory.resolve()
    assert not version.is_active
    assert str(version) == "first"


def test_register_is_idempotent_by_sha(tmp_path: Path) -> None:
    directory = make_weights_dir(tmp_path / "m1", "first", b"weights-1")
    first = model_version_register(weights_dir=directory)
    again = model_version_register(weights_dir=directory, name="another name")
    assert again.pk == first.pk and again.name == "first"
    assert ModelVersion.objects.count() == 1


def test_weights_dir_inside_the_project_is_stored_relative(settings, tmp_path: Path) -> None:
    settings.BASE_DIR = tmp_path
    directory = make_weights_dir(tmp_path / "inference" / "weights", "shipped", b"w")
    version = model_version_register(weights_dir=directory)
    assert version.weights_dir == "inference/weights"
    assert version.weights_path == directory.resolve()


def test_register_refuses_a_folder_without_weights_or_card(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelVersionError, match="no model.keras"):
        model_version_register(weights_dir=tmp_path / "empty")
    (tmp_path / "empty" / "model.keras").write_bytes(b"w")
    with pytest.raises(ModelVersionError, match="no card.json"):
        model_version_register(weights_dir=tmp_path / "empty")


def test_register_refuses_weights_that_do_not_match_their_card(tmp_path: Path) -> None:
    directory = make_weights_dir(tmp_path / "m1", "first", b"weights-1")
    (directory / "model.keras").write_bytes(b"tampered")
    with pytest.raises(ModelVersionError, match="does not match its card"):
        model_version_register(weights_dir=directory)


def test_activation_switches_so_that_exactly_one_is_active(tmp_path: Path) -> None:
    a = model_version_register(weights_dir=make_weights_dir(tmp_path / "a", "a", b"a"), activate=True)
    b = model_version_register(weights_dir=make_weights_dir(tmp_path / "b", "b", b"b"))
    assert a.is_active and not b.is_active
    model_version_activate(version=b)
    assert list(ModelVersion.objects.filter(is_active=True)) == [b]
    assert model_version_active() == b
    model_version_activate(version=b)  # activating the active one changes nothing
    assert ModelVersion.objects.filter(is_active=True).count() == 1


def test_database_refuses_two_active_versions(tmp_path: Path) -> None:
    model_version_register(weights_dir=make_weights_dir(tmp_path / "a", "a", b"a"), activate=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.create(name="b", sha256="b" * 64, weights_dir="x", is_active=True)


def test_active_version_registers_the_shipped_weights_when_none_exists(settings, tmp_path: Path) -> None:
    settings.INFERENCE_WEIGHTS_DIR = make_weights_dir(tmp_path / "shipped", "shipped-model", b"shipped")
    assert not ModelVersion.objects.exists()
    version = model_version_active()
    assert version.name == "shipped-model" and version.is_active
    assert model_version_active().pk == version.pk  # idempotent
    assert ModelVersion.objects.count() == 1


def test_active_version_does_not_reactivate_when_all_were_switched_off(settings, tmp_path: Path) -> None:
    settings.INFERENCE_WEIGHTS_DIR = make_weights_dir(tmp_path / "shipped", "shipped-model", b"shipped")
    model_version_register(weights_dir=make_weights_dir(tmp_path / "a", "a", b"a"))
    with pytest.raises(ModelVersion.DoesNotExist, match="no model version is active"):
        model_version_active()


def test_the_real_shipped_weights_register_by_default(settings) -> None:
    shipped = Path(settings.BASE_DIR) / "inference" / "weights"
    settings.INFERENCE_WEIGHTS_DIR = shipped
    version = model_version_active()
    card = json.loads((shipped / "card.json").read_text())
    assert version.files == {member["file"]: member["sha256"] for member in card["members"]}
    assert version.sha256 == version_sha256(version.files)
    assert version.name == card["name"]
    assert version.weights_dir == "inference/weights"
    assert version.metrics["balanced_accuracy"] == card["metrics"]["balanced_accuracy"]
