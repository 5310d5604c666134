"""Scale out: two worker processes on one broker and one database (in CI: Redis and PostgreSQL),
sharing one media folder as workers on several machines share it over NFS. Every prediction is
stored exactly once, by one of them, and both take part.

The session's worker (tests/conftest.py) is stopped for the test and started again afterwards: a
third consumer on the same queue would take scans too. Both workers run `-c 1 -O fair` with
prefetch multiplier 1 and late acks (settings), so each holds one message at a time; the first
task a worker runs loads TensorFlow (seconds), so while one is busy with it the other takes the
next scan, and with SCANS queued at once both run at least one.
"""

import uuid

import pytest
from celery.utils.nodenames import host_format
from django.db.models import Count

from cases import services
from cases.models import Prediction, SliceResult
from tests.conftest import (
    _purge_queues,
    dataset_slice,
    restart_worker,
    start_worker,
    stop_worker,
    upload,
    wait_for,
)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SCANS = 8
SLICES = [
    "normal/Normal case (1).jpg",
    "malignant/Malignant case (1).jpg",
    "benign/Bengin case (1).jpg",
    "malignant/Malignant case (2).jpg",
]


def test_two_workers_store_each_prediction_once_and_both_take_part(
    celery_worker_process, dataset_dir, patient, alice, settings, tmp_path
):
    stop_worker(celery_worker_process)
    _purge_queues()  # messages left by earlier tests would be claimed by neither or both
    media = tmp_path / "shared-media"
    settings.MEDIA_ROOT = media
    tag = uuid.uuid4().hex[:6]
    names = [f"scale-{tag}-{n}@%h" for n in ("a", "b")]
    workers = [
        start_worker(media, tmp_path / f"worker-{n}.log", name=name, extra_args=("-O", "fair"))
        for n, name in enumerate(names)
    ]
    logs = lambda: "\n".join(w.logs() for w in workers)  # noqa: E731
    try:
        # Both consume before anything is queued: otherwise the first one up might take it all.
        wait_for(
            lambda: (
                all(" ready." in w.log.read_text(errors="replace") for w in workers)
                or any(w.process.poll() is not None for w in workers)
            ),
            timeout=90,
            message=f"the workers did not start:\n{logs()}",
        )
        assert all(w.process.poll() is None for w in workers), f"a worker stopped:\n{logs()}"
        scans = [
            services.scan_upload(
                patient=patient,
                files=[
                    upload(f"s{i}-{j}.jpg", dataset_slice(SLICES[(i + j) % len(SLICES)]), "image/jpeg")
                    for j in range(1 + i % 2)
                ],
                uploaded_by=alice,
            )
            for i in range(SCANS)
        ]
        predictions = Prediction.objects.filter(scan__in=scans)
        wait_for(
            lambda: not predictions.filter(status__in=["queued", "running"]).exists(),
            timeout=150,
            interval=0.5,
            message=f"not every prediction finished:\n{logs()}",
        )

        assert predictions.count() == SCANS
        assert set(predictions.values_list("status", flat=True)) == {"succeeded"}, logs()
        assert set(predictions.values_list("attempts", flat=True)) == {1}
        # One result per slice: none missing, none stored twice.
        for prediction in predictions:
            stored = list(SliceResult.objects.filter(prediction=prediction).values_list("slice", flat=True))
            assert sorted(stored) == sorted(prediction.scan.slices.values_list("pk", flat=True))
        assert SliceResult.objects.filter(prediction__in=predictions).count() == sum(
            scan.slices.count() for scan in scans
        )
        by_worker = dict(predictions.values_list("worker").annotate(n=Count("pk")))
        expanded = {host_format(name) for name in names}
        assert set(by_worker) == expanded, by_worker  # each ran one or more, nobody else ran any
    finally:
        for worker in workers:
            stop_worker(worker)
        restart_worker(celery_worker_process)
