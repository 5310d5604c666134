"""Queue faults with real worker processes: nothing lost, nothing stored twice."""

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.db import connection
from PIL import Image, ImageDraw, ImageFilter

from cases import services
from cases.models import Prediction, SliceResult
from tests.conftest import (
    restart_worker,
    start_worker,
    stop_worker,
    upload,
    wait_for,
    wait_for_prediction,
    worker_children,
)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def ct_like_png(seed: int) -> bytes:
    """A synthetic axial slice the model assesses (air around a body, two dark lungs, tissue
    noise): noise alone would be set aside as not assessable, and the batch would not be long."""
    rng = np.random.default_rng(seed)
    image = Image.new("L", (512, 512), 0)
    draw = ImageDraw.Draw(image)
    draw.ellipse([60, 110, 452, 420], fill=70)
    draw.ellipse([110, 150, 240, 380], fill=8)
    draw.ellipse([272, 150, 402, 380], fill=8)
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(3)), dtype=np.float64)
    pixels += rng.normal(0, 6, pixels.shape) * (pixels > 20)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def long_scan(patient, alice, slices: int = 48):
    """A scan whose batch takes seconds, so that a kill lands in the middle of it."""
    files = [upload(f"s{i}.png", ct_like_png(i)) for i in range(slices)]
    return services.scan_upload(patient=patient, files=files, uploaded_by=alice)


def wait_until_running(prediction_id: int) -> None:
    wait_for(lambda: Prediction.objects.get(pk=prediction_id).status == "running", timeout=60, interval=0.05)


def test_killed_pool_process_mid_batch_is_redelivered_and_stored_once(worker, patient, alice):
    prediction = long_scan(patient, alice).predictions.get()
    wait_until_running(prediction.pk)
    time.sleep(0.5)
    children = worker_children(worker)
    assert children, worker.logs()
    for pid in children:
        os.kill(pid, signal.SIGKILL)

    final = wait_for_prediction(prediction.pk, timeout=180, worker=worker)
    assert final.status == Prediction.Status.SUCCEEDED, final.error
    assert final.attempts == 2  # the killed run, then the redelivered one
    assert SliceResult.objects.filter(prediction=final).count() == 48


def test_killed_worker_mid_batch_is_recovered_by_the_sweep_after_restart(worker, patient, alice, settings):
    prediction = long_scan(patient, alice).predictions.get()
    wait_until_running(prediction.pk)
    time.sleep(0.5)
    for pid in [*worker_children(worker), worker.process.pid]:
        os.kill(pid, signal.SIGKILL)
    worker.process.wait()
    restart_worker(worker)

    # The run was lost with its worker; once it is past the time limit the sweep re-sends it.
    settings.CELERY_TASK_TIME_LIMIT = 1
    settings.PREDICTION_LOST_GRACE = timedelta(0)
    time.sleep(1.5)
    assert services.predictions_sweep() == 1

    final = wait_for_prediction(prediction.pk, timeout=180, worker=worker)
    assert final.status == Prediction.Status.SUCCEEDED, final.error
    assert final.attempts == 2
    assert SliceResult.objects.filter(prediction=final).count() == 48


def test_a_task_that_keeps_killing_its_worker_ends_failed(worker, patient, alice, settings):
    """A poison prediction: every attempt dies with its process. Attempts are counted in the
    database, so it ends `failed` instead of looping forever."""
    prediction = long_scan(patient, alice).predictions.get()
    for attempt in range(1, settings.PREDICTION_MAX_ATTEMPTS + 1):
        wait_until_running(prediction.pk)
        for pid in worker_children(worker):
            os.kill(pid, signal.SIGKILL)
        wait_for(
            lambda attempt=attempt: (
                Prediction.objects.get(pk=prediction.pk).status != "running"
                or Prediction.objects.get(pk=prediction.pk).attempts > attempt
            ),
            timeout=60,
        )
    final = wait_for_prediction(prediction.pk, timeout=120, worker=worker)
    assert final.status == Prediction.Status.FAILED
    assert f"Gave up after {settings.PREDICTION_MAX_ATTEMPTS} attempts" in final.error
    assert not SliceResult.objects.filter(prediction=final).exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="drops a PostgreSQL backend connection")
def test_dropped_database_connection_mid_task_is_retried(worker, patient, alice):
    prediction = long_scan(patient, alice).predictions.get()
    wait_until_running(prediction.pk)
    time.sleep(0.5)
    with connection.cursor() as cursor:  # what a database restart or failover does to the worker
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )

    final = wait_for_prediction(prediction.pk, timeout=180, worker=worker)
    assert final.status == Prediction.Status.SUCCEEDED, final.error
    assert final.attempts == 2
    assert SliceResult.objects.filter(prediction=final).count() == 48


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PrivateRedis:
    """A redis-server of the test's own, so that stopping it disturbs nothing else."""

    def __init__(self, folder):
        self.binary = shutil.which("redis-server")
        self.port, self.folder, self.process = free_port(), folder, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.binary is not None, "redis-server is not installed"
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for(self.answers, timeout=10)

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path):
    redis = PrivateRedis(tmp_path)
    if redis.binary is None:
        pytest.skip("redis-server is not installed: the broker-outage test needs one of its own")
    redis.start()
    yield redis
    redis.stop()


@contextlib.contextmanager
def web_and_worker(celery_worker_process, tmp_path, env, *, web_processes: int = 2):
    """gunicorn and one more worker (with the periodic sweep) on the test database."""
    worker = start_worker(
        celery_worker_process.media_root,
        tmp_path / "worker.log",
        extra_env=env,
        extra_args=("-B", "--schedule", str(tmp_path / "beat-schedule")),
    )
    port = free_port()
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "lungportal.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(web_processes),
            "--timeout",
            "120",
        ],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdout=(tmp_path / "web.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: web.poll() is not None or _reachable(url), timeout=60)
        assert web.poll() is None
    except AssertionError:
        web.kill()
        stop_worker(worker)
        raise AssertionError((tmp_path / "web.log").read_text()[-3000:]) from None
    try:
        yield url, worker
    finally:
        web.terminate()
        stop_worker(worker)
        web.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(web.pid, signal.SIGKILL)  # gunicorn's workers, should any outlive their master


@pytest.fixture
def stack_on_private_redis(celery_worker_process, private_redis, tmp_path):
    env = {
        **celery_worker_process.env,
        "REDIS_URL": private_redis.url,
        "PREDICTION_SWEEP_SECONDS": "2",
        "PREDICTION_REQUEUE_AFTER_SECONDS": "3",
    }
    with web_and_worker(celery_worker_process, tmp_path, env) as stack:
        yield stack


def _reachable(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url}/accounts/login/", timeout=2)
        return True
    except (OSError, urllib.error.URLError):
        return False


def api_upload(url: str, token: str, patient_id: int, data: bytes) -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="s.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{url}/api/v1/patients/{patient_id}/scans/",
        data=body,
        method="POST",
        headers={
            "Authorization": f"Token {token}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_uploads_succeed_while_the_broker_is_down_and_run_when_it_returns(
    stack_on_private_redis, private_redis, patient, alice
):
    from knox.models import AuthToken

    url, worker = stack_on_private_redis
    token = AuthToken.objects.create(alice)[1]
    private_redis.stop()

    started = time.monotonic()
    answers = [api_upload(url, token, patient.pk, ct_like_png(i)) for i in range(3)]
    assert [status for status, _ in answers] == [202, 202, 202], answers
    assert time.monotonic() - started < 30  # a dead broker must not hang the upload
    ids = [body["prediction"]["id"] for _, body in answers]
    assert set(Prediction.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"queued"}

    private_redis.start()  # the broker comes back; the sweep re-sends what it never got
    for prediction_id in ids:
        final = wait_for_prediction(prediction_id, timeout=120, worker=worker)
        assert final.status == Prediction.Status.SUCCEEDED, final.error
        assert final.attempts == 1
        assert final.slice_results.count() == 1
