"""Pages and API at scale: the clinician's pages and their API counterparts against a seeded
PostgreSQL database, served by gunicorn as `bin/run` starts it, under concurrent load.

`run()` seeds (10,000 patients, 50,000 scans with a succeeded prediction each; `quick`: a tenth),
counts each endpoint's queries in-process with the test client, then starts gunicorn and measures
requests/s, p50 and p95 with a small thread-pool load generator (`CONCURRENCY` clients, each its
own HTTP session). Seeding and the server run in subprocesses with DATABASE_URL set, since the
settings read it at import. Without PostgreSQL the section says it was skipped.

    python -m bench.pages seed|queries   (the subprocesses; DATABASE_URL set by `run`)
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.report import Section, markdown_table

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = "postgres://postgres@127.0.0.1:5432"
DATABASE_NAME = "lungportal_bench_pages"
CONCURRENCY = 8
USERNAME = "bench-clinician"
HISTORY_SCANS = 200
SLICES_PER_SCAN = 3
TEAMS = ("Bench A", "Bench B", "Bench C")
FIRST = ["Anna", "Ben", "Carla", "David", "Elif", "Farid", "Greta", "Hugo", "Ines", "Jon", "Karin", "Luis"]
LAST = [
    "Andersen", "Baker", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Hansen", "Ivanova",
    "Jensen", "Kowalski", "Larsen", "Moreau", "Nielsen", "Olsen", "Petrov", "Quinn", "Rossi",
    "Schmidt", "Tanaka", "Ueda", "Vogel", "Weber", "Young", "Zimmer",
]  # fmt: skip


@dataclass(frozen=True)
class Sizes:
    patients: int
    scans: int
    reviews: int

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        return cls(1_000, 5_000, 1_000) if quick else cls(10_000, 50_000, 10_000)


# --- run(): the orchestration -----------------------------------------------------------------


def run(*, quick: bool = False) -> Section:
    title = "Pages and API at scale"
    sizes = Sizes.of(quick)
    database_url = os.environ.get("DATABASE_URL", "")
    own_database = not database_url.startswith(("postgres://", "postgresql://"))
    if own_database:
        database_url = f"{ADMIN_URL}/{DATABASE_NAME}"
    reason = _postgres_unreachable(database_url, own_database)
    if reason:
        return Section(title, f"Skipped: PostgreSQL is not reachable ({reason}).", {"skipped": reason})
    data_dir = Path(tempfile.mkdtemp(prefix="lp-bench-pages-", dir="/tmp"))
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "LUNGPORTAL_DATA_DIR": str(data_dir),
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "lungportal.settings"),
        # The load generator is one client: the per-user API limit would answer 429 after 600.
        "API_THROTTLE_USER": "1000000/min",
        "DICOM_PORT": "0",
    }
    if own_database:
        _admin_sql(
            f"DROP DATABASE IF EXISTS {DATABASE_NAME} WITH (FORCE)", f"CREATE DATABASE {DATABASE_NAME}"
        )
    try:
        started = time.monotonic()
        seeded = _subprocess_json(["seed", json.dumps(sizes.__dict__)], env)
        seed_seconds = time.monotonic() - started
        endpoints = _endpoints(seeded)
        counts = _subprocess_json(["queries", json.dumps(endpoints)], env)
        with _Server(env, data_dir) as base:
            cookies, token = _log_in(base, seeded)
            timings = {
                name: _load(
                    base + path, cookies if kind == "page" else {}, token if kind == "api" else "", quick
                )
                for name, kind, path in endpoints
            }
    finally:
        if own_database and not os.environ.get("BENCH_PAGES_KEEP_DB"):  # kept: to EXPLAIN by hand
            _admin_sql(f"DROP DATABASE IF EXISTS {DATABASE_NAME} WITH (FORCE)")
        subprocess.run(["rm", "-rf", str(data_dir)], check=False)
    rows = [
        [
            name,
            counts[name],
            f"{timings[name]['rps']:.1f}",
            f"{timings[name]['p50']:.0f}",
            f"{timings[name]['p95']:.0f}",
        ]
        for name, _, _ in endpoints
    ]
    table = markdown_table(["endpoint", "queries", "req/s", "p50 ms", "p95 ms"], rows)
    about = (
        f"Seeded in PostgreSQL in {seed_seconds:.0f} s with bulk inserts: 3 care teams, {sizes.patients:,} "
        f"patients, {sizes.scans:,} scans of {SLICES_PER_SCAN} slices, each with a succeeded prediction "
        f"(suspicion, label, finding, per-slice results), {sizes.reviews:,} reviews (a tenth of them "
        f"amendments); the clinician's team holds {seeded['team_patients']:,} patients and "
        f"{seeded['team_scans']:,} scans, one patient {HISTORY_SCANS} scans. gunicorn as `bin/run` starts "
        f"it (2 sync workers) on the same cores as the load: {CONCURRENCY} concurrent clients, each request "
        "timed from send to the last byte, after warm-up requests. Queries: counted in-process with the "
        "test client on the same database (pages include the session and audit queries, the API the "
        "token's); they do not grow with rows (pinned in tests/test_query_counts.py)."
    )
    figures = {"sizes": sizes.__dict__, "seed_seconds": round(seed_seconds, 1), "concurrency": CONCURRENCY}
    figures["endpoints"] = {name: {"queries": counts[name], **timings[name]} for name, _, _ in endpoints}
    return Section(title, f"{table}\n\n{about}\n\n{FINDINGS}", figures)


FINDINGS = (
    "What changed (cases/migrations/0010): indexes for every filter and ordering of these pages: "
    "patient (team, name, id) for the patient list; scan (patient, study_date, created_at, id) for the "
    "patient page and history; scan (study_date, id) for the worklist's date filters; scan and "
    "prediction (created_at, id) for their default order; prediction (scan, created_at, id) and review "
    "(prediction, created_at, id) for each scan's prediction to read and its current reading. Query "
    "shape: the worklist counts slices in a subquery instead of COUNT(...) GROUP BY (which joined every "
    "slice, evaluated each subquery three times per scan and made the paginator's COUNT(*) compute them "
    "all) and sorts read/unread on one EXISTS; the patient list fetches its page of patients first and "
    "their latest predictions in one more query for those 25 only, so a late page costs what the first "
    "does; PostgreSQL runs without JIT (settings). The before/after measurements of these changes "
    "were one-off runs of code that no longer exists: they are in commit b6981c7's issue note, not "
    "here. Absolute times drift with the machine's other load; compare rows of one run."
)


def _postgres_unreachable(database_url: str, own_database: bool) -> str:
    try:
        import psycopg
    except ImportError as exc:
        return str(exc)
    target = f"{ADMIN_URL}/postgres" if own_database else database_url
    try:
        with psycopg.connect(target, connect_timeout=5):
            return ""
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _admin_sql(*statements: str) -> None:
    import psycopg

    with psycopg.connect(f"{ADMIN_URL}/postgres", autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement)  # our own fixed statements


def _subprocess_json(args: list[str], env: dict[str, str]) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "bench.pages", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.pages {args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _endpoints(seeded: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(name, page or api, path) of every measured endpoint."""
    patient, scan, prediction = seeded["history_patient"], seeded["scan"], seeded["prediction"]
    name, mrn = seeded["name_query"], seeded["mrn_query"]
    late, late_api = seeded["late_page"], seeded["late_api_page"]
    return [
        ("worklist page /", "page", "/"),
        ("worklist page, filtered (unread, from 2025)", "page", "/?reading=unread&study_from=2025-01-01"),
        ("worklist page, a late page", "page", f"/?page={seeded['late_worklist_page']}"),
        ("API worklist", "api", "/api/v1/worklist/"),
        ("API worklist, filtered (succeeded, from 2025)", "api", "/api/v1/worklist/?state=succeeded&study_from=2025-01-01"),  # noqa: E501
        ("patient list, page 1", "page", "/patients/"),
        (f"patient list, last page ({late})", "page", f"/patients/?page={late}"),
        ("API patients, page 1", "api", "/api/v1/patients/"),
        (f"API patients, last page ({late_api})", "api", f"/api/v1/patients/?page={late_api}"),
        ("search by name (page)", "page", f"/patients/?q={name}"),
        ("search by MRN (page)", "page", f"/patients/?q={mrn}"),
        ("search by name (API)", "api", f"/api/v1/patients/?q={name}"),
        ("search by MRN (API)", "api", f"/api/v1/patients/?q={mrn}"),
        (f"patient page, {HISTORY_SCANS} scans", "page", f"/patients/{patient}/"),
        (f"API history, {HISTORY_SCANS} scans", "api", f"/api/v1/patients/{patient}/history/"),
        ("scan page", "page", f"/scans/{scan}/"),
        ("API scan", "api", f"/api/v1/scans/{scan}/"),
        ("prediction page", "page", f"/predictions/{prediction}/"),
        ("API prediction", "api", f"/api/v1/predictions/{prediction}/"),
    ]  # fmt: skip


class _Server:
    """gunicorn as bin/run starts it, on a free port, in its own process group."""

    def __init__(self, env: dict[str, str], data_dir: Path) -> None:
        self.env, self.log = env, data_dir / "web.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [str(Path(sys.executable).parent / "gunicorn"), "lungportal.wsgi"]
        command += ["--config", "python:lungportal.gunicorn_conf", "--bind", f"127.0.0.1:{port}"]
        command += ["--workers", "2", "--timeout", "120"]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        base = f"http://127.0.0.1:{port}"
        import requests

        for _ in range(600):
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn stopped:\n{self.log.read_text()[-3000:]}")
            try:
                requests.get(base + "/accounts/login/", timeout=5)
                return base
            except requests.ConnectionError:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not answer in 120 s")

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass


def _log_in(base: str, seeded: dict[str, Any]) -> tuple[dict[str, str], str]:
    """A session cookie from the login page, and a knox token from the API."""
    import requests

    session = requests.Session()
    form = session.get(base + "/accounts/login/", timeout=30).text
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    if csrf is None:
        raise RuntimeError("no CSRF token on the login page")
    answer = session.post(
        base + "/accounts/login/",
        data={"username": USERNAME, "password": seeded["password"], "csrfmiddlewaretoken": csrf.group(1)},
        headers={"Referer": base + "/accounts/login/"},
        timeout=30,
        allow_redirects=False,
    )
    if answer.status_code != 302:
        raise RuntimeError(f"login refused ({answer.status_code})")
    token = requests.post(
        base + "/api/v1/auth/token/", json={"username": USERNAME, "password": seeded["password"]}, timeout=30
    )
    token.raise_for_status()
    return {name: value or "" for name, value in session.cookies.get_dict().items()}, str(
        token.json()["token"]
    )


def _load(url: str, cookies: dict[str, str], token: str, quick: bool) -> dict[str, float]:
    """`CONCURRENCY` clients requesting `url` until `total` answers or the time budget is spent."""
    import requests

    total, budget = (48, 20.0) if quick else (120, 40.0)
    headers = {"Authorization": f"Token {token}"} if token else {}
    times: list[float] = []
    lock = threading.Lock()
    failures: list[str] = []

    def client(warm_up: int, deadline: float) -> None:
        with requests.Session() as session:
            session.cookies.update(cookies)
            session.headers.update(headers)
            for i in range(10_000):
                with lock:
                    if (warm_up == 0 and len(times) >= total) or time.monotonic() > deadline:
                        return
                started = time.perf_counter()
                answer = session.get(url, timeout=120, allow_redirects=False)
                elapsed = time.perf_counter() - started
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code} {url}")
                    return
                if warm_up:
                    if i + 1 >= warm_up:
                        return
                    continue
                with lock:
                    times.append(elapsed)

    client(2, time.monotonic() + budget)  # warm-up: code paths, caches, the database's buffers
    started = time.monotonic()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        for _ in range(CONCURRENCY):
            pool.submit(client, 0, started + budget)
    wall = time.monotonic() - started
    if failures:
        raise RuntimeError(f"load failed: {failures[0]}")
    ordered = sorted(times)
    return {
        "requests": len(times),
        "rps": len(times) / wall,
        "p50": statistics.median(ordered) * 1000,
        "p95": ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)] * 1000,
    }


# --- the subprocesses: seeding and query counts (DATABASE_URL set) ----------------------------


def _seed(sizes: Sizes) -> dict[str, Any]:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.contrib.auth.models import User
    from django.db import connection, transaction

    from cases.models import CareTeam, Patient, Prediction, Review, Scan, Slice, SliceResult, Study
    from inference.models import ModelVersion

    rng = random.Random(14)
    now = datetime.now(UTC)
    password = secrets.token_urlsafe(24)
    with transaction.atomic():
        teams = CareTeam.objects.bulk_create([CareTeam(name=name) for name in TEAMS])
        clinician = User.objects.create_user(USERNAME, password=password)
        clinician.care_teams.add(teams[0])
        version = ModelVersion.objects.create(
            name="bench", sha256=secrets.token_hex(32), weights_dir="bench", is_active=True
        )
        patients = Patient.objects.bulk_create(
            [
                Patient(
                    team=teams[i % 3],
                    mrn=f"B{i:07d}",
                    name=f"{rng.choice(FIRST)} {rng.choice(LAST)}-{i}",
                    birth_date=date(1930, 1, 1) + timedelta(days=rng.randrange(70 * 365)),
                    sex=rng.choice("FMOU"),
                    created_at=now - timedelta(days=rng.randrange(3000)),
                )
                for i in range(sizes.patients)
            ],
            batch_size=5000,
        )
        owners = [patients[0]] * HISTORY_SCANS
        owners += [rng.choice(patients[1:]) for _ in range(sizes.scans - HISTORY_SCANS)]
        arrivals = [now - timedelta(minutes=rng.randrange(5 * 365 * 24 * 60)) for _ in owners]
        studies = Study.objects.bulk_create(
            [
                Study(patient=patient, study_date=created.date(), created_at=created)
                for patient, created in zip(owners, arrivals, strict=True)
            ],
            batch_size=5000,
        )
        scans = Scan.objects.bulk_create(
            [
                Scan(
                    patient=study.patient,
                    study=study,
                    study_date=study.study_date,
                    created_at=study.created_at,
                    uploaded_by=clinician,
                )
                for study in studies
            ],
            batch_size=5000,
        )
        slices = Slice.objects.bulk_create(
            [
                Slice(
                    scan=scan,
                    position=position,
                    image=f"bench/{scan.pk}-{position}.png",
                    thumbnail=f"bench/{scan.pk}-{position}-thumb.png",
                    original_name=f"{position}.png",
                    content_type="image/png",
                    sha256="0" * 64,
                    width=512,
                    height=512,
                    size_bytes=200_000,
                )
                for scan in scans
                for position in range(SLICES_PER_SCAN)
            ],
            batch_size=10_000,
        )
        predictions = []
        for scan in scans:
            suspicion = rng.random()
            label = "malignant" if suspicion >= 0.5 else rng.choice(["benign", "normal"])
            finished = scan.created_at + timedelta(seconds=rng.randrange(20, 200))
            predictions.append(
                Prediction(
                    scan=scan,
                    model_version=version,
                    status="succeeded",
                    attempts=1,
                    created_at=scan.created_at,
                    queued_at=scan.created_at,
                    started_at=scan.created_at + timedelta(seconds=5),
                    finished_at=finished,
                    inference_seconds=2.0,
                    suspicion=suspicion,
                    suspicious_slices=int(suspicion >= 0.5),
                    finding="Suspicious for malignancy." if suspicion >= 0.5 else "No sign of malignancy.",
                    label=label,
                    p_malignant=suspicion,
                    p_benign=(1 - suspicion) * 0.7,
                    p_normal=(1 - suspicion) * 0.3,
                )
            )
        predictions = Prediction.objects.bulk_create(predictions, batch_size=5000)
        SliceResult.objects.bulk_create(
            [
                SliceResult(
                    prediction=prediction,
                    slice=item,
                    label=prediction.label,
                    p_malignant=prediction.p_malignant,
                    p_benign=prediction.p_benign,
                    p_normal=prediction.p_normal,
                )
                for prediction, first in zip(predictions, range(0, len(slices), SLICES_PER_SCAN), strict=True)
                for item in slices[first : first + SLICES_PER_SCAN]
            ],
            batch_size=10_000,
        )
        read = rng.sample(predictions, sizes.reviews * 9 // 10)
        reviews = Review.objects.bulk_create(
            [
                Review(
                    prediction=prediction,
                    study_id=prediction.scan.study_id,
                    reviewer=clinician,
                    verdict="agree",
                    label=prediction.label,
                    created_at=prediction.created_at + timedelta(hours=rng.randrange(1, 72)),
                )
                for prediction in read
            ],
            batch_size=5000,
        )
        Review.objects.bulk_create(
            [
                Review(
                    prediction_id=review.prediction_id,
                    study_id=review.study_id,
                    reviewer=clinician,
                    verdict="disagree",
                    label="benign" if review.label != "benign" else "normal",
                    supersedes=review,
                    created_at=review.created_at + timedelta(hours=1),
                )
                for review in reviews[: sizes.reviews // 10]
            ],
            batch_size=5000,
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    team_patients = [p for p in patients if p.team_id == teams[0].pk]
    team_scans = sum(1 for scan in scans if scan.patient.team_id == teams[0].pk)
    history = [s for s in scans if s.patient_id == patients[0].pk]
    probe = team_patients[len(team_patients) // 2]
    return {
        "password": password,
        "history_patient": patients[0].pk,
        "scan": history[0].pk,
        "prediction": predictions[scans.index(history[0])].pk,
        "name_query": probe.name.split()[1].split("-")[0],  # a last name: about 1 in 25 patients
        "mrn_query": probe.mrn,
        "team_patients": len(team_patients),
        "team_scans": team_scans,
        "late_page": math.ceil(len(team_patients) / 25),
        "late_api_page": math.ceil(len(team_patients) / 25),
        "late_worklist_page": math.ceil(team_scans / 25),
    }


def _queries(endpoints: list[tuple[str, str, str]]) -> dict[str, int]:
    """Each endpoint's queries, counted in-process with the test client (a real token for the API)."""
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment
    from knox.models import AuthToken

    setup_test_environment()
    user = User.objects.get(username=USERNAME)
    page = Client()
    page.force_login(user)
    api = Client(headers={"Authorization": f"Token {AuthToken.objects.create(user)[1]}"})
    counts = {}
    for name, kind, path in endpoints:
        client = page if kind == "page" else api
        client.get(path)  # warm-up: the first request of a process loads what later ones reuse
        with CaptureQueriesContext(connection) as captured:
            answer = client.get(path)
        if answer.status_code != 200:
            raise RuntimeError(f"{path} answered {answer.status_code}")
        counts[name] = len(captured.captured_queries)
    return counts


def main(argv: list[str]) -> None:
    command, argument = argv[0], json.loads(argv[1])
    if command == "seed":
        print(json.dumps(_seed(Sizes(**argument))))
    elif command == "queries":
        print(json.dumps(_queries([tuple(item) for item in argument])))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lungportal.settings")
    main(sys.argv[1:])
