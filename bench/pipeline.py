"""End to end: upload → queue → worker → stored result, through the real API, against the raw
serving rate and the published app's way measured in the same run.

Everything runs as it does in production, each in its own process: gunicorn (as bin/run starts it),
Celery workers, and the raw `manage.py classify` in a third process, all on a private data
directory (SQLite and the filesystem broker; with DATABASE_URL set, a private database created on
that PostgreSQL server and dropped afterwards; with REDIS_URL set, that Redis, which should be a
database of its own). Upload-to-result is the prediction's `finished_at` (the commit of its stored
result, by the same clock) minus the moment the upload was sent, so polling does not blur it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import Section, markdown_table

ROOT = Path(__file__).resolve().parent.parent
DATASET = ROOT.parent / "shared" / "datasets" / "iqothnccd"
TARGET_RATIO = 0.5  # issue 14: the pipeline reaches at least half the raw serving rate


@dataclass(frozen=True)
class Plan:
    single_uploads: int  # one-slice uploads for the latency percentiles
    study_slices: int  # the one large study
    batch_studies: int  # studies queued at once for throughput
    batch_slices: int  # slices in each of them
    published_slices: int  # slices classified the published app's way (a model load each)

    @classmethod
    def of(cls, *, quick: bool) -> Plan:
        if quick:
            return cls(single_uploads=5, study_slices=24, batch_studies=4, batch_slices=6, published_slices=2)
        return cls(single_uploads=20, study_slices=200, batch_studies=8, batch_slices=25, published_slices=5)


def run(*, quick: bool = False) -> Section:
    """Measure the pipeline with one and two warm workers, the raw rate and the published app's
    way; the Section's figures hold every number, its markdown a table and what it means."""
    plan = Plan.of(quick=quick)
    slices = dataset_slices(plan.study_slices)
    with (
        tempfile.TemporaryDirectory(prefix="lp-bench-pipe-") as folder,
        private_database(os.environ.get("DATABASE_URL", "")) as database_url,
    ):
        root = Path(folder)
        env = environment(root, database_url)
        manage(env, root, "migrate", "--noinput", "--verbosity", "0")
        username, password, patient_id = seed(env, root)
        # The raw rate first, alone on the machine: nothing else is running yet.
        raw = raw_rates(env, root, slices, published=plan.published_slices)
        figures: dict[str, Any] = {
            "quick": quick,
            "batch_studies": plan.batch_studies,
            "batch_slices": plan.batch_slices,
            **raw,
        }
        with web_server(env, root) as web:
            api = Api(web.url, username=username, password=password, patient_id=patient_id)
            with celery_worker(env, root, "bench-1") as first:
                warm_up(api, [first])
                figures.update(single_slice_latency(api, slices[0], plan.single_uploads))
                figures.update(study(api, slices))
                figures.update(throughput(api, slices, plan, workers=1))
                with celery_worker(env, root, "bench-2") as second:
                    warm_up(api, [first, second])
                    figures.update(throughput(api, slices, plan, workers=2))
            figures["web_loads_tensorflow"] = loads_tensorflow(web.pids())
    figures["ratio_pipeline_raw"] = round(figures["study_slices_per_s"] / figures["raw_slices_per_s"], 3)
    figures["ratio_throughput_1_raw"] = round(
        figures["throughput_1_worker_slices_per_s"] / figures["raw_slices_per_s"], 3
    )
    figures["database"] = "PostgreSQL" if database_url else "SQLite"
    figures["broker"] = "Redis" if os.environ.get("REDIS_URL") else "filesystem"
    return Section(title="End to end: upload to stored result", markdown=markdown(figures), figures=figures)


# --- the data and the private environment -------------------------------------------------------


def dataset_slices(count: int) -> list[Path]:
    """`count` real slices of the shared dataset, classes interleaved as a mixed study would be."""
    manifest = DATASET / "manifest.csv"
    if not manifest.exists():
        raise RuntimeError(f"the shared IQ-OTH/NCCD dataset is not at {DATASET}; the benchmark needs it")
    rows = [line.split(",") for line in manifest.read_text().splitlines()[1:] if line.strip()]
    by_class: dict[str, list[Path]] = {}
    for row in rows:
        if not row[-1]:  # duplicates of another slice are left out
            by_class.setdefault(row[1], []).append(DATASET / row[0])
    mixed = [path for group in zip(*by_class.values(), strict=False) for path in group]
    return [mixed[i % len(mixed)] for i in range(count)]


@contextlib.contextmanager
def private_database(url: str) -> Iterator[str]:
    """A fresh PostgreSQL database on DATABASE_URL's server, dropped afterwards; "" for SQLite
    (it lives in the private data directory)."""
    if not url.startswith(("postgres://", "postgresql://")):
        yield ""
        return
    import psycopg

    name = f"lp_bench_pipeline_{uuid.uuid4().hex[:8]}"
    parts = urllib.parse.urlsplit(url)
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield parts._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def environment(root: Path, database_url: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"LUNGPORTAL_TEST_DB_NAME", "LUNGPORTAL_MEDIA_ROOT", "DATABASE_URL"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="lungportal.settings",
        LUNGPORTAL_DATA_DIR=str(root),
        API_THROTTLE_USER="1000000/min",  # the benchmark polls; the throttle is not what it measures
        DICOM_PORT="0",
        PYTHONUNBUFFERED="1",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def manage(env: dict[str, str], root: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


_SEED = """
import json, secrets
from datetime import date
from cases.services.accounts import user_create
from cases.services.patients import patient_create
from inference.services import model_version_active
password = secrets.token_urlsafe(24)
user = user_create(username="bench", password=password, team_name="Benchmark")
patient = patient_create(team=user.care_teams.get(), mrn="BENCH-1", name="Benchmark Patient",
                         birth_date=date(1961, 3, 14), created_by=user)
model_version_active()  # registered once here, not raced by two workers
print(json.dumps({"username": "bench", "password": password, "patient": patient.pk}))
"""


def seed(env: dict[str, str], root: Path) -> tuple[str, str, int]:
    """A clinician, a patient of their team and the shipped model version, in the private data."""
    seeded = json.loads(manage(env, root, "shell", "--command", _SEED).strip().splitlines()[-1])
    return seeded["username"], seeded["password"], int(seeded["patient"])


# --- the raw rate and the published app's way, in their own process ------------------------------

_RAW = """
import io, json, sys, time
from pathlib import Path
import django
django.setup()
from django.conf import settings
from django.core.management import call_command

spec = json.loads(Path(sys.argv[1]).read_text())
paths = spec["paths"]

def classify():
    out = io.StringIO()
    started = time.perf_counter()
    call_command("classify", *paths, "--json", stdout=out)
    seconds = time.perf_counter() - started
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == len(paths) and all("error" not in line for line in lines), lines[:3]
    return seconds

cold = classify()  # loads TensorFlow and the ensemble once, as a starting worker does
warm = (classify() + classify()) / 2

# The network alone on the same slices, decoded beforehand: what the worker's inference_seconds times.
from inference.preprocessing import inspect, preprocess
from inference.services import model_version_active, model_version_predictor
predictor = model_version_predictor(model_version_active())
inputs = [preprocess(inspect(Path(p).read_bytes()).image, size=predictor.image_size) for p in paths]
started = time.perf_counter()
predictor.predict(inputs)
network = time.perf_counter() - started

# The published app's way: the model loaded again for every request, one slice at a time
# (bench/inference.py's helper where it is there, else the same done here).
def reload_per_request(images):
    import keras
    for image in images:
        members = [keras.models.load_model(predictor.weights_dir / name, compile=False)
                   for name in predictor.hashes]
        [member.predict(image[None], verbose=0) for member in members]
try:
    from bench.inference import _Bench
    helper = _Bench(predictor, [], quick=True).reload_per_request
except (ImportError, AttributeError, TypeError):
    helper = reload_per_request
per_slice = []
for image in inputs[: spec["published"]]:
    started = time.perf_counter()
    helper([image])
    per_slice.append(time.perf_counter() - started)
print(json.dumps({"cold": cold, "warm": warm, "network": network, "published": per_slice}))
"""


def raw_rates(env: dict[str, str], root: Path, slices: list[Path], *, published: int) -> dict[str, Any]:
    """`manage.py classify` on the study's slices, warm (the ensemble loaded, as a worker holds it),
    the network alone on the decoded slices, and the published app's way (the model loaded per slice)."""
    spec = root / "raw.json"
    spec.write_text(json.dumps({"paths": [str(p) for p in slices], "published": published}))
    done = subprocess.run(
        [sys.executable, "-c", _RAW, str(spec)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"the raw classify run failed:\n{done.stderr[-3000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    per_slice = found["published"]
    return {
        "raw_slices": len(slices),
        "raw_cold_seconds": round(found["cold"], 2),
        "raw_seconds": round(found["warm"], 2),
        "raw_slices_per_s": round(len(slices) / found["warm"], 2),
        "raw_network_seconds": round(found["network"], 2),
        "published_slices": len(per_slice),
        "published_seconds_per_slice": round(float(np.mean(per_slice)), 2),
        "published_slices_per_s": round(len(per_slice) / sum(per_slice), 3),
    }


# --- the processes: gunicorn and Celery workers --------------------------------------------------


@dataclass
class Process:
    process: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def pids(self) -> list[int]:
        """The process and its children (gunicorn's workers, Celery's pool)."""
        return [self.process.pid, *children(self.process.pid)]


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        # Its own process group, so that stopping it ends its children too.
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # children that outlived their parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def web_server(env: dict[str, str], root: Path) -> Iterator[Process]:
    """gunicorn as bin/run starts it: two workers, the house config."""
    port = _free_port()
    log = root / "web.log"
    process = _start(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "lungportal.wsgi",
            "--config",
            "python:lungportal.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--timeout",
            "120",
        ],
        env,
        log,
    )
    web = Process(process, log, url=f"http://127.0.0.1:{port}")
    try:
        _wait(lambda: process.poll() is not None or _answers(f"{web.url}/healthz"), 60, web)
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn did not start:\n{web.logs()}")
        yield web
    finally:
        _stop(process)


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except urllib.error.HTTPError:
        return True  # 503 while no worker has reported in: the server itself answers
    except OSError:
        return False
    return True


@contextlib.contextmanager
def celery_worker(env: dict[str, str], root: Path, name: str) -> Iterator[Process]:
    """One worker as `make run` starts it (-c 1; prefetch 1 and late acks come from settings)."""
    log = root / f"{name}.log"
    process = _start(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "lungportal",
            "worker",
            "-Q",
            "inference,default",
            "-c",
            "1",
            "--without-mingle",
            "--without-gossip",
            "-n",
            f"{name}@%h",
            "--loglevel=INFO",
        ],
        env,
        log,
    )
    worker = Process(process, log)
    try:
        _wait(lambda: process.poll() is not None or " ready." in worker.logs(), 120, worker)
        if process.poll() is not None:
            raise RuntimeError(f"worker {name} did not start:\n{worker.logs()}")
        yield worker
    finally:
        _stop(process)


def _wait(condition: Any, timeout: float, process: Process, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready within {timeout} s:\n{process.logs()}")
        time.sleep(interval)


def loads_tensorflow(pids: list[int]) -> bool:
    """Whether any of these processes has TensorFlow's native library mapped: importing
    TensorFlow (or Keras on it) loads it, and nothing unloads it."""
    read = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            maps = Path(f"/proc/{pid}/maps").read_text()
            read += 1
            if "tensorflow" in maps:
                return True
    if not read:
        raise RuntimeError("cannot read the web processes' memory maps (/proc) to check for TensorFlow")
    return False


# --- the API client -------------------------------------------------------------------------------


@dataclass
class Upload:
    prediction_id: int
    sent: float  # time.time() when the request left
    answered: float  # time.time() when its 202 came back
    slices: int


@dataclass
class Result:
    upload: Upload
    body: dict[str, Any] = field(default_factory=dict)

    def stamp(self, name: str) -> float:
        return datetime.fromisoformat(self.body[name]).timestamp()

    @property
    def latency(self) -> float:
        """Upload sent → result committed."""
        return self.stamp("finished_at") - self.upload.sent


class Api:
    """The portal's REST API as an integration uses it: a token, multipart uploads, polling."""

    def __init__(self, url: str, *, username: str, password: str, patient_id: int) -> None:
        self.url = url
        self.patient_id = patient_id
        answer = self._call("POST", "/api/v1/auth/token/", {"username": username, "password": password})
        self.token = answer["token"]

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None, **kw: Any) -> Any:
        headers = {"Accept": "application/json", **kw.get("headers", {})}
        data = kw.get("data")
        if payload is not None:
            data = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        if getattr(self, "token", None):
            headers["Authorization"] = f"Token {self.token}"
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from None

    def upload(self, files: list[Path]) -> Upload:
        boundary = uuid.uuid4().hex
        parts = []
        for index, path in enumerate(files):
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="s{index:03}.jpg"'
                f"\r\nContent-Type: image/jpeg\r\n\r\n".encode()
                + path.read_bytes()
                + b"\r\n"
            )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        sent = time.time()
        answer = self._call(
            "POST",
            f"/api/v1/patients/{self.patient_id}/scans/",
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        return Upload(int(answer["prediction"]["id"]), sent, time.time(), len(files))

    def prediction(self, prediction_id: int) -> dict[str, Any]:
        body: dict[str, Any] = self._call("GET", f"/api/v1/predictions/{prediction_id}/")
        return body

    def wait(self, uploads: list[Upload], *, timeout: float = 1800, interval: float = 0.1) -> list[Result]:
        """Poll until every prediction has finished; refuse a failed one (the numbers would lie)."""
        results = {u.prediction_id: Result(u) for u in uploads}
        pending = set(results)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"predictions {sorted(pending)} unfinished after {timeout} s")
            for prediction_id in sorted(pending):
                body = self.prediction(prediction_id)
                if body["status"] == "failed":
                    raise RuntimeError(f"prediction {prediction_id} failed: {body['error']}")
                if body["status"] == "succeeded":
                    results[prediction_id].body = body
                    pending.discard(prediction_id)
            time.sleep(interval)
        return [results[u.prediction_id] for u in uploads]


# --- the measurements -----------------------------------------------------------------------------


def warm_up(api: Api, workers: list[Process], *, rounds: int = 6) -> None:
    """One-slice scans until every worker has run one (each loads TensorFlow on its first task)."""
    slice_ = dataset_slices(1)
    for _ in range(rounds):
        uploads = [api.upload(slice_) for _ in workers]
        api.wait(uploads, timeout=300, interval=0.25)
        if all("succeeded in" in worker.log.read_text(errors="replace") for worker in workers):
            return
    raise RuntimeError("a worker never ran a warm-up task:\n" + "\n".join(w.logs() for w in workers))


def single_slice_latency(api: Api, path: Path, count: int) -> dict[str, Any]:
    """Upload one slice, wait for its result, again: the latency a clinician sees for one slice."""
    latencies = [api.wait([api.upload([path])], interval=0.1)[0].latency for _ in range(count)]
    return {
        "single_uploads": count,
        "single_p50_s": round(float(np.percentile(latencies, 50)), 3),
        "single_p95_s": round(float(np.percentile(latencies, 95)), 3),
    }


def study(api: Api, slices: list[Path]) -> dict[str, Any]:
    """One study of all the slices: upload to stored result, and where the time went."""
    result = api.wait([api.upload(slices)], interval=1.0)[0]
    body, upload = result.body, result.upload
    seconds = result.latency
    run = body["run_seconds"]
    return {
        "study_slices": len(slices),
        "study_seconds": round(seconds, 2),
        "study_slices_per_s": round(len(slices) / seconds, 2),
        "study_upload_s": round(upload.answered - upload.sent, 2),
        "study_wait_s": round(body["wait_seconds"], 2),
        "study_run_s": round(run, 2),
        "study_inference_s": round(body["inference_seconds"], 2),
        "study_worker_other_s": round(run - body["inference_seconds"], 2),
    }


def throughput(api: Api, slices: list[Path], plan: Plan, *, workers: int) -> dict[str, Any]:
    """Several studies sent at once (from parallel clients): slices per second from the first
    upload sent to the last result stored."""
    studies = [
        [slices[(i * plan.batch_slices + j) % len(slices)] for j in range(plan.batch_slices)]
        for i in range(plan.batch_studies)
    ]
    uploads: list[Upload] = []
    lock = threading.Lock()

    def send(files: list[Path]) -> None:
        done = api.upload(files)
        with lock:
            uploads.append(done)

    senders = [threading.Thread(target=send, args=(files,)) for files in studies]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    if len(uploads) != len(studies):
        raise RuntimeError("an upload failed; see the web server's log")
    results = api.wait(uploads, interval=1.0)
    first = min(u.sent for u in uploads)
    last = max(r.stamp("finished_at") for r in results)
    total = sum(u.slices for u in uploads)
    return {f"throughput_{workers}_worker_slices_per_s": round(total / (last - first), 2)}


# --- the report -----------------------------------------------------------------------------------


def markdown(f: dict[str, Any]) -> str:
    ratio = f["ratio_pipeline_raw"]
    batch = f"{f['batch_studies']} studies × {f['batch_slices']} slices sent at once"
    rows = [
        [
            "one slice, warm worker: upload → stored result, p50 / p95",
            f"{f['single_p50_s']:.2f} s / {f['single_p95_s']:.2f} s ({f['single_uploads']} uploads)",
        ],
        [
            f"{f['study_slices']}-slice study: upload → stored result",
            f"{f['study_seconds']:.1f} s, **{f['study_slices_per_s']:.1f} slices/s**",
        ],
        ["… upload request (checks, stored copies, thumbnails)", f"{f['study_upload_s']:.1f} s"],
        ["… queued until a worker claims it (`wait_seconds`)", f"{f['study_wait_s']:.1f} s"],
        [
            "… worker: the network (`inference_seconds`)",
            f"{f['study_inference_s']:.1f} s (alone on the same slices: {f['raw_network_seconds']:.1f} s)",
        ],
        ["… worker: read, verify, decode, heatmaps, store", f"{f['study_worker_other_s']:.1f} s"],
        [f"throughput, {batch}, one worker", f"{f['throughput_1_worker_slices_per_s']:.1f} slices/s"],
        [f"throughput, {batch}, two workers", f"{f['throughput_2_worker_slices_per_s']:.1f} slices/s"],
        [
            f"raw: `manage.py classify` on the same {f['raw_slices']} slices, model loaded",
            f"**{f['raw_slices_per_s']:.1f} slices/s** "
            f"(cold, with the model load: {f['raw_cold_seconds']:.1f} s)",
        ],
        [
            "the published app's way: the model loaded again for each slice",
            f"{f['published_slices_per_s']:.2f} slices/s ({f['published_seconds_per_slice']:.1f} s a slice)",
        ],
        ["**pipeline / raw** (study rate / classify rate; target ≥ 0.5)", f"**{ratio:.2f}**"],
        ["throughput with one worker / raw", f"{f['ratio_throughput_1_raw']:.2f}"],
        ["a web process loads TensorFlow", "yes (a fault)" if f["web_loads_tensorflow"] else "no"],
    ]
    verdict = "meets" if ratio >= TARGET_RATIO else "does not meet"
    web = (
        "A web process mapped TensorFlow's library: something imports it outside the workers."
        if f["web_loads_tensorflow"]
        else "No gunicorn process mapped TensorFlow's library after serving every upload and poll."
    )
    return (
        markdown_table(["measure", "value"], rows)
        + "\n\n"
        + f"Through the real API (token auth; gunicorn with two workers as `bin/run` starts it; Celery "
        f"workers with `-c 1`; {f['database']} and the {f['broker']} broker), the {f['study_slices']}-slice "
        f"study runs at {ratio:.0%} of the raw `classify` rate measured in this run, which {verdict} the "
        "target of half. What the pipeline adds is the upload's checks and stored copies, the worker "
        "reading, verifying and decoding every slice again, Grad-CAM heatmaps for the most suspicious "
        "slices and the writes; the published app's way (a model load per slice) is "
        f"{f['raw_slices_per_s'] / f['published_slices_per_s']:.0f}× slower than the warm model. {web}"
    )
