"""Shared fixtures: named people, a private media folder per test, images, and a real Celery worker."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from tests import factories
from tests.dataset import DATASET, dataset_missing

pytest_plugins = ["tests.cases.fixtures"]  # scans, predictions and results, for every test module

ROOT = Path(__file__).resolve().parent.parent


# --- files --------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def private_media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.DICOM_INBOX_DIR = tmp_path / "dicom-inbox"
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def fresh_cache():
    """Login limits and API throttles count in the shared cache: no test inherits another's attempts."""
    cache.clear()


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (64, 64), mode: str = "L") -> bytes:
    image = Image.new(mode, size)
    for x in range(size[0]):  # a gradient, so that the image is not trivially empty
        image.putpixel((x, x % size[1]), 255 if mode == "L" else (255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def upload(name: str, data: bytes, content_type: str = "image/png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


@pytest.fixture
def dataset_dir() -> Path:
    """The shared IQ-OTH/NCCD slices; tests that need them skip, saying why, where they are absent
    (and fail in CI: tests/dataset.py)."""
    if not (DATASET / "manifest.csv").exists():
        dataset_missing(f"the shared IQ-OTH/NCCD dataset is not at {DATASET}; these tests need real slices")
    return DATASET


def dataset_slice(relative: str) -> bytes:
    """One slice of the shared dataset by its manifest path (skips where the dataset is absent)."""
    path = DATASET / relative
    if not path.exists():
        dataset_missing(f"the shared IQ-OTH/NCCD dataset is not at {DATASET}; this test needs {relative}")
    return path.read_bytes()


# --- people -------------------------------------------------------------------------------------


@pytest.fixture
def team_a(db):
    return factories.CareTeamFactory(name="Chest A")


@pytest.fixture
def team_b(db):
    return factories.CareTeamFactory(name="Chest B")


@pytest.fixture
def alice(team_a):
    """The owner: registers patients and uploads scans in team A."""
    return factories.UserFactory(username="alice", teams=[team_a])


@pytest.fixture
def bob(team_a):
    """A colleague of Alice's on the same care team."""
    return factories.UserFactory(username="bob", teams=[team_a])


@pytest.fixture
def charlie(team_b):
    """An outsider: a clinician of another care team."""
    return factories.UserFactory(username="charlie", teams=[team_b])


@pytest.fixture
def admin_user(db):
    """A staff admin in no care team: everything in Django admin, no patients in the portal."""
    return factories.UserFactory(username="admin", is_staff=True, is_superuser=True)


@pytest.fixture
def logged_in(client, alice):
    """The test client, logged in as alice."""
    client.force_login(alice)
    return client


@pytest.fixture
def patient(alice, team_a):
    return factories.PatientFactory(team=team_a, created_by=alice)


# --- a real Celery worker -----------------------------------------------------------------------


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    media_root: Path
    log: Path
    env: dict[str, str]

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]


def _purge_queues() -> None:
    from lungportal.celery import app

    with app.connection_for_write() as conn:
        for queue in ("inference", "default", "integrations"):
            try:
                conn.default_channel.queue_purge(queue)
            except Exception:  # the queue does not exist yet
                pass


def start_worker(
    media_root: Path,
    log: Path,
    *,
    name: str = "",
    extra_env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
) -> Worker:
    """Start `celery worker` as its own process on the test database and the configured broker."""
    from django.db import connection

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "lungportal.settings_test",
        "LUNGPORTAL_DATA_DIR": str(settings.DATA_DIR),
        "LUNGPORTAL_MEDIA_ROOT": str(media_root),
        "LUNGPORTAL_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
        "WORKER_HEARTBEAT_SECONDS": "1",
        **(extra_env or {}),
    }
    hostname = name or f"test-{uuid.uuid4().hex[:8]}@%h"
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "lungportal",
        "worker",
        "-Q",
        "inference,default,integrations",
        "-c",
        "1",
        "--without-mingle",
        "--without-gossip",
        "-n",
        hostname,
        "--loglevel=INFO",
        *extra_args,
    ]
    handle = log.open("ab")
    # Its own process group, so that stopping it also ends pool processes orphaned by a test's SIGKILL.
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    return Worker(process=process, media_root=media_root, log=log, env=env)


def stop_worker(worker: Worker) -> None:
    worker.process.terminate()
    try:
        worker.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.process.kill()
        worker.process.wait()
    try:
        os.killpg(worker.process.pid, signal.SIGKILL)  # stragglers holding database connections
    except ProcessLookupError:
        pass


def worker_children(worker: Worker) -> list[int]:
    """The prefork pool processes of a worker (they run the tasks)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == worker.process.pid:
            children.append(int(stat.parent.name))
    return children


def restart_worker(worker: Worker) -> None:
    """Start a fresh worker process in place of one that was killed."""
    if worker.process.poll() is None:
        stop_worker(worker)
    fresh = start_worker(worker.media_root, worker.log, extra_env=worker.env)
    worker.process = fresh.process


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[Worker]:
    with django_db_blocker.unblock():
        _purge_queues()
        media = tmp_path_factory.mktemp("worker-media")
        worker = start_worker(media, tmp_path_factory.mktemp("logs") / "worker.log")
    yield worker
    stop_worker(worker)


def wait_for(condition, *, timeout: float, interval: float = 0.25, message: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(message or f"condition not met within {timeout} s")


@pytest.fixture
def worker(celery_worker_process, transactional_db, settings) -> Worker:
    """A live worker sharing this test's database and media folder; waits until it reports in."""
    from health.models import WorkerHeartbeat

    settings.MEDIA_ROOT = celery_worker_process.media_root
    assert celery_worker_process.process.poll() is None, celery_worker_process.logs()
    wait_for(
        WorkerHeartbeat.objects.exists,
        timeout=60,
        message=f"the worker never reported in:\n{celery_worker_process.logs()}",
    )
    return celery_worker_process


def wait_for_prediction(prediction_id: int, *, timeout: float = 90, worker: Worker | None = None):
    from cases.models import Prediction

    def final() -> bool:
        return Prediction.objects.get(pk=prediction_id).is_final

    try:
        wait_for(final, timeout=timeout, interval=0.5, message=f"prediction {prediction_id} never finished")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{worker.logs() if worker else ''}") from None
    return Prediction.objects.get(pk=prediction_id)
