"""The admin lists model versions and switches the active one through the service."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from inference.models import ModelVersion

from .test_services import make_weights_dir

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.org", "a-long-password-123")


@pytest.fixture
def versions(tmp_path: Path) -> tuple[ModelVersion, ModelVersion]:
    from inference.services import model_version_register

    a = model_version_register(weights_dir=make_weights_dir(tmp_path / "a", "model-a", b"a"), activate=True)
    b = model_version_register(weights_dir=make_weights_dir(tmp_path / "b", "model-b", b"b"))
    return a, b


def test_changelist_shows_versions_with_balanced_accuracy(client, staff, versions) -> None:
    client.force_login(staff)
    response = client.get(reverse("admin:inference_modelversion_changelist"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "model-a" in body and "model-b" in body and "0.500" in body


def test_activate_action_switches_the_active_version(client, staff, versions) -> None:
    a, b = versions
    client.force_login(staff)
    response = client.post(
        reverse("admin:inference_modelversion_changelist"),
        {"action": "activate_selected", "_selected_action": [b.pk]},
        follow=True,
    )
    assert "Model version “model-b” is now active" in response.content.decode()
    a.refresh_from_db()
    b.refresh_from_db()
    assert b.is_active and not a.is_active


def test_activate_action_needs_exactly_one_version(client, staff, versions) -> None:
    a, b = versions
    client.force_login(staff)
    response = client.post(
        reverse("admin:inference_modelversion_changelist"),
        {"action": "activate_selected", "_selected_action": [a.pk, b.pk]},
        follow=True,
    )
    assert "Select exactly one model version" in response.content.decode()
    a.refresh_from_db()
    assert a.is_active


def test_weights_folder_hashes_and_metrics_are_read_only(client, staff, versions) -> None:
    """What a version runs is fixed at registration: an admin renames it, never repoints it."""
    a, _ = versions
    folder, files = a.weights_dir, {"member1.keras": "a" * 64}
    type(a).objects.filter(pk=a.pk).update(files=files)
    client.force_login(staff)
    response = client.post(
        reverse("admin:inference_modelversion_change", args=[a.pk]),
        {
            "name": "renamed",
            "weights_dir": "/tmp/elsewhere",
            "sha256": "0" * 64,
            "files": '{"model.keras": "0"}',
            "metrics": "{}",
        },
    )
    assert response.status_code == 302
    a.refresh_from_db()
    assert a.name == "renamed" and a.sha256 != "0" * 64 and a.metrics["balanced_accuracy"] == 0.5
    assert a.weights_dir == folder and a.files == files
