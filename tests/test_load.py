"""200 uploads sent concurrently through the API, with two workers: every prediction succeeds
once, none is lost or stored twice, and no request answers 5xx."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from knox.models import AuthToken

from cases.models import Prediction, SliceResult
from tests.cases.test_faults import api_upload, ct_like_png, web_and_worker
from tests.conftest import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

UPLOADS = 200


def test_two_hundred_concurrent_uploads_all_succeed_exactly_once(worker, patient, alice, tmp_path):
    token = AuthToken.objects.create(alice)[1]
    images = [ct_like_png(i) for i in range(8)]
    env = {**worker.env, "API_THROTTLE_USER": "100000/min"}
    with web_and_worker(worker, tmp_path, env, web_processes=4) as (url, second_worker):
        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(
                pool.map(lambda i: api_upload(url, token, patient.pk, images[i % 8]), range(UPLOADS))
            )
        statuses = [status for status, _ in answers]
        assert statuses.count(202) == UPLOADS, [a for a in answers if a[0] != 202]

        ids = {body["prediction"]["id"] for _, body in answers}
        assert len(ids) == UPLOADS

        def all_final() -> bool:
            return not Prediction.objects.filter(pk__in=ids, status__in=["queued", "running"]).exists()

        wait_for(all_final, timeout=600, interval=2, message=f"not all finished\n{second_worker.logs()}")

    outcomes = Prediction.objects.filter(pk__in=ids)
    assert set(outcomes.values_list("status", flat=True)) == {"succeeded"}
    assert SliceResult.objects.filter(prediction__in=ids).count() == UPLOADS  # one result each, none twice
    assert Prediction.objects.count() == UPLOADS
