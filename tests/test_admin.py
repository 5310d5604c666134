"""Django admin: every model is registered and its pages open for a staff admin."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from cases.models import Prediction, Review

OUR_APPS = ("cases", "inference", "health", "pacs", "webhooks", "outbox")


def test_every_model_of_ours_is_in_admin():
    ours = [m for m in apps.get_models() if m._meta.app_label in OUR_APPS]
    missing = [m.__name__ for m in ours if m not in admin.site._registry]
    assert not missing


@pytest.mark.parametrize(
    "model", [m for m in apps.get_models() if m._meta.app_label in OUR_APPS], ids=lambda m: m.__name__
)
def test_admin_pages_open(admin_client, slice_result, bob, model):
    from cases import services

    services.review_submit(
        prediction=Prediction.objects.get(pk=slice_result.prediction_id), reviewer=bob, verdict="agree"
    )
    info = (model._meta.app_label, model._meta.model_name)
    changelist = admin_client.get(reverse("admin:{}_{}_changelist".format(*info)), {"q": "a"})
    assert changelist.status_code == 200
    first = model.objects.first()
    if first is not None:
        change = reverse("admin:{}_{}_change".format(*info), args=[first.pk])
        assert admin_client.get(change).status_code == 200


def test_prediction_outputs_are_read_only_in_admin(admin_client, slice_result):
    url = reverse("admin:cases_prediction_change", args=[slice_result.prediction_id])
    body = admin_client.get(url).content.decode()
    assert 'name="p_benign"' not in body and 'name="label"' not in body  # shown, not editable
    for output in ("suspicion", "finding", "weights_sha256", "not_assessable_slices", "task_id"):
        assert f'name="{output}"' not in body, output
    assert reverse("admin:cases_scan_change", args=[slice_result.prediction.scan_id]) in body  # links
    assert Review.objects.count() == 0
