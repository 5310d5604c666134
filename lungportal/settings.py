"""LungPortal settings: one file, every knob an environment variable with a safe default.

Embedded defaults need no server (SQLite and Celery's filesystem transport under
LUNGPORTAL_DATA_DIR); DATABASE_URL and REDIS_URL switch to PostgreSQL and Redis.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from pythonjsonlogger.core import RESERVED_ATTRS

from lungportal import secret_key
from lungportal.data_dir import DIRECTORY_MODE, FILE_MODE, private_directory, private_file
from lungportal.env import envbool, envint, envlist, envrate

BASE_DIR = Path(__file__).resolve().parent.parent


DJANGO_ENV = os.environ.get("DJANGO_ENV", "development")
if DJANGO_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(f"DJANGO_ENV must be development or production, got {DJANGO_ENV!r}")
PRODUCTION = DJANGO_ENV == "production"

DATA_DIR = Path(os.environ.get("LUNGPORTAL_DATA_DIR", BASE_DIR / "var")).resolve()
private_directory(DATA_DIR)  # the database, media, cache and broker: the portal's user only

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
DEBUG = envbool("DJANGO_DEBUG", False)
if PRODUCTION:
    if not SECRET_KEY:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_ENV=production")
    if weak := secret_key.weakness(SECRET_KEY):
        raise ImproperlyConfigured(
            f"DJANGO_SECRET_KEY is too weak: {weak}. Make one: {secret_key.GENERATE_HINT}"
        )
    if DEBUG:  # debug pages show settings, the URLconf and stack traces to anyone
        raise ImproperlyConfigured("DJANGO_DEBUG must be off when DJANGO_ENV=production")
elif not SECRET_KEY:
    SECRET_KEY = secret_key.development_key(DATA_DIR)
ALLOWED_HOSTS = envlist(
    "DJANGO_ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS = envlist("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "lungportal.admin_apps.PortalAdminConfig",  # django.contrib.admin, login limited per address
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "knox",
    "csp",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "twofactor",
    "audit",
    "outbox",
    "inference",
    "cases",
    "pacs",
    "fhir_api",
    "webhooks",
    "health",
]

MIDDLEWARE = [
    # First: every later log line of the request carries its id (lungportal/request_log.py).
    "lungportal.request_log.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Refuses an oversized body by its Content-Length, before anything reads it.
    "cases.upload_limits.RequestSizeLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "lungportal.caching.NoStoreMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Ends a session SESSION_ABSOLUTE_SECONDS after its login, however busy it has been.
    "lungportal.sessions.AbsoluteSessionLimitMiddleware",
    # Tells whether the session gave a second factor; then staff who have not are held at it.
    "django_otp.middleware.OTPMiddleware",
    "twofactor.middleware.StaffSecondFactorMiddleware",
    # Writes a request's reads to the audit trail when it ends (one query).
    "audit.middleware.AuditMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "lungportal.urls"
WSGI_APPLICATION = "lungportal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            "builtins": ["django.contrib.humanize.templatetags.humanize"],
        },
    },
]

# Database: SQLite under the data directory unless DATABASE_URL says otherwise.
DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=envint("DB_CONN_MAX_AGE", 0))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    if DATABASES["default"]["NAME"] != ":memory:" and Path(DATABASES["default"]["NAME"]).parent.is_dir():
        private_file(Path(DATABASES["default"]["NAME"]))  # 0600 before SQLite makes it 0644
    DATABASES["default"]["OPTIONS"] = {
        # The web process and the worker write to the same file: wait for locks rather than
        # failing, and take the write lock up front so two writers cannot deadlock.
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so that a Celery worker started by the tests sees the same data.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-db.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Our queries are short OLTP ones: JIT compiling cost more than it saved (one-off EXPLAIN
    # ANALYZE of the worklist at 1,000 patients, before commit b6981c7: most of its 6 s was JIT).
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c jit=off"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    # Length and a list are not enough: aaaaaaaaaaaa and qwertyuiopas pass both.
    {"NAME": "core.passwords.GuessablePasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses logins while a username/IP pair is locked out
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=envint("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "lungportal.lockout.lockout_response"
AXES_VERBOSE = False
AXES_CLIENT_IP_CALLABLE = "core.net.client_ip"
# How many reverse proxies stand in front of the portal, each appending to X-Forwarded-For.
# 0: clients connect directly and the header is ignored (anyone can write it). Lockouts, the page
# login limit and the audit trail read it through core.net.client_ip, DRF's throttles as NUM_PROXIES.
TRUSTED_PROXIES = envint("TRUSTED_PROXIES", 0)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "cases:dashboard"
LOGOUT_REDIRECT_URL = "login"
# Staff see every care team: in production they need a code from an authenticator app (TOTP) too.
STAFF_OTP_REQUIRED = envbool("STAFF_OTP_REQUIRED", PRODUCTION)
OTP_TOTP_ISSUER = "LungPortal"
OTP_TOTP_THROTTLE_FACTOR = 1  # waits of 1, 2, 4, 8 ... s after successive wrong codes; 0 turns them off
OTP_ADMIN_HIDE_SENSITIVE_DATA = True  # admins may delete a lost device, never read its secret key

LANGUAGE_CODE = "en-gb"
FORMAT_MODULE_PATH = ["lungportal.formats"]  # ISO dates on every page (lungportal/formats)
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STORAGES = {
    # Uploads are private: served only through team-checked views, never from a public URL.
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Serve static files straight from the app folders outside production: no collectstatic needed.
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = not PRODUCTION
MEDIA_ROOT = Path(os.environ.get("LUNGPORTAL_MEDIA_ROOT", DATA_DIR / "media")).resolve()
private_directory(MEDIA_ROOT)  # files stored under a looser umask before are out of reach too
# No route serves this prefix: uploads are private and reach browsers only through views that
# check the viewer's care team (cases.views.slice_image and friends).
MEDIA_URL = "/private-media-not-served/"

# Uploads
UPLOAD_MAX_FILES = envint("UPLOAD_MAX_FILES", 300, minimum=1)
UPLOAD_MAX_FILE_BYTES = envint("UPLOAD_MAX_FILE_BYTES", 20 * 1024 * 1024, minimum=1)
UPLOAD_MAX_PIXELS = envint("UPLOAD_MAX_PIXELS", 40_000_000, minimum=1)
UPLOAD_MAX_SIDE = envint("UPLOAD_MAX_SIDE", 8192, minimum=1)
UPLOAD_MIN_SIDE = envint("UPLOAD_MIN_SIDE", 64, minimum=1)
# Pixels per study in all: decoding is the costly part of a check, so one request may not ask for
# more than this (300 slices of 1024×1024 by default; a CT slice is usually 512×512).
UPLOAD_MAX_STUDY_PIXELS = envint("UPLOAD_MAX_STUDY_PIXELS", 300 * 1024 * 1024, minimum=1)
# A body declaring more than this is answered 413 before a byte of it is read: room for a full
# upload (files, their multipart headers, the form's fields), but never more than 1 GiB.
UPLOAD_MAX_REQUEST_BYTES = envint(
    "UPLOAD_MAX_REQUEST_BYTES",
    min(UPLOAD_MAX_FILES * (UPLOAD_MAX_FILE_BYTES + 16 * 1024) + 1024 * 1024, 1024**3),
    minimum=1,
)
# The first handler stops reading a multipart body as soon as one file passes UPLOAD_MAX_FILE_BYTES.
FILE_UPLOAD_HANDLERS = [
    "cases.upload_limits.FileSizeLimitUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
DATA_UPLOAD_MAX_NUMBER_FILES = UPLOAD_MAX_FILES
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Every file the default storage writes (uploads, heatmaps, SRs, received DICOM files with their
# full headers) and every folder it makes, MEDIA_ROOT included: the portal's user only.
FILE_UPLOAD_PERMISSIONS = FILE_MODE
FILE_UPLOAD_DIRECTORY_PERMISSIONS = DIRECTORY_MODE
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# Celery: the database is the source of truth, the broker only a doorbell.
REDIS_URL = os.environ.get("REDIS_URL", "")
BROKER_DIR = DATA_DIR / "broker"
REDIS_VISIBILITY_TIMEOUT = envint("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60)
CELERY_BROKER_URL = REDIS_URL or "filesystem://"
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = (
    {"visibility_timeout": REDIS_VISIBILITY_TIMEOUT}
    if REDIS_URL
    else {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
    }
)
if not REDIS_URL:
    for folder in ("queue", "control"):
        private_directory(BROKER_DIR / folder)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
# Inference has its own queue so that TensorFlow workers can be scaled apart from the rest; the
# integrations (outbox relay, webhooks, PACS export) theirs, so that a delivery never waits behind
# a model loading or running.
CELERY_TASK_ROUTES = {
    "cases.tasks.prediction_run": {"queue": "inference"},
    "outbox.tasks.*": {"queue": "integrations"},
    "webhooks.tasks.*": {"queue": "integrations"},
    "pacs.tasks.result_export*": {"queue": "integrations"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = envint("CELERY_TASK_TIME_LIMIT", 600, minimum=10)
CELERY_TASK_SOFT_TIME_LIMIT = envint(
    "CELERY_TASK_SOFT_TIME_LIMIT", max(5, CELERY_TASK_TIME_LIMIT * 9 // 10), minimum=5
)
if CELERY_TASK_SOFT_TIME_LIMIT >= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured("CELERY_TASK_SOFT_TIME_LIMIT must be below CELERY_TASK_TIME_LIMIT")
if REDIS_URL and REDIS_VISIBILITY_TIMEOUT <= CELERY_TASK_TIME_LIMIT:
    # Redis would hand a still-running task to a second worker.
    raise ImproperlyConfigured("CELERY_VISIBILITY_TIMEOUT must be longer than CELERY_TASK_TIME_LIMIT")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE = {
    "resend-stale-predictions": {
        "task": "cases.tasks.predictions_sweep",
        "schedule": timedelta(seconds=envint("PREDICTION_SWEEP_SECONDS", 60, minimum=1)),
    },
    "report-orphan-media": {
        "task": "cases.tasks.media_sweep",
        "schedule": timedelta(hours=envint("MEDIA_SWEEP_HOURS", 24, minimum=1)),
    },
    "resend-due-pacs-reports": {
        "task": "pacs.tasks.result_exports_sweep",
        "schedule": timedelta(seconds=envint("PACS_SWEEP_SECONDS", 60, minimum=1)),
    },
    "dispatch-waiting-events": {
        "task": "outbox.tasks.outbox_sweep",
        "schedule": timedelta(seconds=envint("OUTBOX_SWEEP_SECONDS", 60, minimum=1)),
    },
    "resend-due-webhooks": {
        "task": "webhooks.tasks.deliveries_sweep",
        "schedule": timedelta(seconds=envint("WEBHOOK_SWEEP_SECONDS", 60, minimum=1)),
    },
}

# Predictions
PREDICTION_MAX_ATTEMPTS = envint("PREDICTION_MAX_ATTEMPTS", 3, minimum=1)
# A prediction still queued after this long is assumed lost by the broker and re-sent.
PREDICTION_REQUEUE_AFTER = timedelta(seconds=envint("PREDICTION_REQUEUE_AFTER_SECONDS", 120, minimum=1))
# Past the hard time limit plus this grace, a `running` prediction's worker is taken for dead.
PREDICTION_LOST_GRACE = timedelta(seconds=envint("PREDICTION_LOST_GRACE_SECONDS", 30))
WORKER_HEARTBEAT_SECONDS = envint("WORKER_HEARTBEAT_SECONDS", 10, minimum=1)
# A running prediction whose worker has not heartbeaten for this long died with its worker: the
# sweep re-sends it (within this plus PREDICTION_SWEEP_SECONDS), long before the hard time limit.
WORKER_LOST_AFTER = timedelta(
    seconds=envint(
        "WORKER_LOST_AFTER_SECONDS", 4 * WORKER_HEARTBEAT_SECONDS, minimum=2 * WORKER_HEARTBEAT_SECONDS
    )
)

# Inference (TensorFlow)
INFERENCE_WEIGHTS_DIR = Path(
    os.environ.get("INFERENCE_WEIGHTS_DIR", BASE_DIR / "inference" / "weights")
).resolve()
INFERENCE_BATCH_SIZE = envint("INFERENCE_BATCH_SIZE", 16, minimum=1)
# Grad-CAM heatmaps for this many of a study's most suspicious slices (each costs a pass).
INFERENCE_HEATMAP_SLICES = envint("INFERENCE_HEATMAP_SLICES", 16, minimum=0)
# The forward pass: "tflite" (converted at load from the same weights; 2.3× Keras here, equal within
# 1e-4: docs/benchmarks.md) or "keras".
INFERENCE_RUNTIME = os.environ.get("INFERENCE_RUNTIME", "tflite")
if INFERENCE_RUNTIME not in ("tflite", "keras"):
    raise ImproperlyConfigured(f"INFERENCE_RUNTIME must be tflite or keras, not {INFERENCE_RUNTIME!r}")

# DICOM in and out (pacs/)
DICOM_AE_TITLE = os.environ.get("DICOM_AE_TITLE", "LUNGPORTAL")[:16]
DICOM_HOST = os.environ.get("DICOM_HOST", "127.0.0.1")
DICOM_PORT = envint("DICOM_PORT", 11112, minimum=0)  # the C-STORE receiver; 0: not started by bin/run
# Instances the receiver answered Success wait here (private: full headers) until they are stored.
DICOM_INBOX_DIR = Path(os.environ.get("DICOM_INBOX_DIR", DATA_DIR / "dicom-inbox"))
DICOM_CREATE_PATIENTS = envbool("DICOM_CREATE_PATIENTS", False)  # unknown PatientID: register, else wait
# DICOM TLS for the receiver: its certificate and key (PEM files); every sender then presents its own.
DICOM_TLS_CERT = os.environ.get("DICOM_TLS_CERT", "")
DICOM_TLS_KEY = os.environ.get("DICOM_TLS_KEY", "")
if bool(DICOM_TLS_CERT) != bool(DICOM_TLS_KEY):
    raise ImproperlyConfigured("DICOM_TLS_CERT and DICOM_TLS_KEY go together: set both, or neither")
# The model's input window where a file carries none: like the training slices' (exported with
# widths of 350-1200 HU and centres of 50-600 HU: lungs black, soft tissue grey).
DICOM_DEFAULT_WINDOW_CENTER = float(os.environ.get("DICOM_DEFAULT_WINDOW_CENTER", "40"))
DICOM_DEFAULT_WINDOW_WIDTH = float(os.environ.get("DICOM_DEFAULT_WINDOW_WIDTH", "400"))
DICOM_MAX_SERIES_BYTES = envint("DICOM_MAX_SERIES_BYTES", 1024**3, minimum=1)  # one study, unpacked
PACS_STOW_URL = os.environ.get("PACS_STOW_URL", "")  # results back by STOW-RS, e.g. .../dicom-web/
PACS_STOW_AUTHORIZATION = os.environ.get("PACS_STOW_AUTHORIZATION", "")  # its Authorization header
PACS_CSTORE = os.environ.get("PACS_CSTORE", "")  # or by C-STORE: "AET@host:port"
PACS_DELIVERY_MAX_ATTEMPTS = envint("PACS_DELIVERY_MAX_ATTEMPTS", 10, minimum=1)
TF_INTRA_OP_THREADS = envint("TF_INTRA_OP_THREADS", 2)
TF_INTER_OP_THREADS = envint("TF_INTER_OP_THREADS", 1)

# Login lockouts and API throttles count here: in Redis where REDIS_URL is set, so that every web
# process and host counts together (lungportal/cache.py); a file cache on the embedded default.
CACHES = {
    "default": (
        {
            "BACKEND": "lungportal.cache.PrefixedRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "lungportal-cache",
            # An unreachable Redis costs a request a second at most (lungportal/cache.py).
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
        if REDIS_URL
        else {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
        }
    )
}
# Lockouts in that cache with Redis; in the database (the admin's Access attempts) otherwise.
AXES_HANDLER = (
    "axes.handlers.cache.AxesCacheHandler" if REDIS_URL else "axes.handlers.database.AxesDatabaseHandler"
)

# REST API
API_TOKEN_TTL = timedelta(hours=envint("API_TOKEN_TTL_HOURS", 10, minimum=1))
REST_KNOX = {
    "TOKEN_TTL": API_TOKEN_TTL,  # tokens are stored hashed (SHA-512) and expire
    "AUTH_HEADER_PREFIX": "Token",
    "TOKEN_LIMIT_PER_USER": envint("API_TOKENS_PER_USER", 20, minimum=1),
}
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only: the browsable HTML API would answer anonymous visitors with a page; the docs at
    # /api/docs/ (logged in) are the interactive way in.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 25,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "cases.api.errors.api_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "cases.api.throttles.AnonRateThrottle",
        "cases.api.throttles.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": envrate("API_THROTTLE_ANON", "60/min"),
        "user": envrate("API_THROTTLE_USER", "600/min"),
        "login": envrate("API_THROTTLE_LOGIN", "10/min"),
    },
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    # DRF's default (None) believes the whole X-Forwarded-For header, which any client can write.
    "NUM_PROXIES": TRUSTED_PROXIES,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "LungPortal API",
    "DESCRIPTION": (
        "Patients, CT scans and CNN predictions for hospital integrations. Authenticate with "
        "`POST /api/v1/auth/token/` and send `Authorization: Token <token>`. Every 4xx answer has "
        'the body `{"detail": "...", "errors": {"field": ["..."]}}`. Objects outside your care '
        "teams answer 404."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ClassLabelEnum": "cases.models.LABEL_CHOICES",
        "ReadingStateEnum": "cases.worklist.READINGS",  # the worklist filter and the report alike
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "cases.api.schema.add_error_responses",
    ],
}

# Security
from csp.constants import NONE, SELF  # noqa: E402

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        # blob: for the slice viewer's tool cursors (Cornerstone3D draws them as SVG blobs the
        # page itself creates; static/viewer/); no other origin.
        "img-src": [SELF, "data:", "blob:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
SESSION_COOKIE_AGE = envint("SESSION_IDLE_SECONDS", 60 * 60 * 8, minimum=60)
SESSION_SAVE_EVERY_REQUEST = True  # the age above is an idle timeout
SESSION_ABSOLUTE_SECONDS = envint("SESSION_ABSOLUTE_SECONDS", 60 * 60 * 12, minimum=60)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = envbool("DJANGO_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = envint("DJANGO_HSTS_SECONDS", 60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# One JSON object a line (LOG_FORMAT=text for a person reading a terminal), each with the request
# id that follows a request into the Celery tasks it enqueues (lungportal/request_log.py). Log
# lines name records by id: never a patient's name, MRN or a file's name.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "json")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured("LOG_FORMAT is json or text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "lungportal.request_log.RequestIdFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            # Django hands its request to log lines as an extra: its text is the URL with the
            # query string, which can hold a name or an MRN searched for. The message has the path.
            "reserved_attrs": [*RESERVED_ATTRS, "request"],
        },
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]}
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

# Webhooks (webhooks/): signed events to endpoints that admins register per care team.
# Attempts per delivery: waits of 30 s doubling to at most an hour, so 15 attempts span about 8 h.
WEBHOOK_MAX_ATTEMPTS = envint("WEBHOOK_MAX_ATTEMPTS", 15, minimum=1)
# An endpoint whose deliveries end failed (every attempt used) this many times in a row is disabled
# and the admins are told; a delivery that succeeds resets the count.
WEBHOOK_DISABLE_AFTER = envint("WEBHOOK_DISABLE_AFTER", 5, minimum=1)
WEBHOOK_TIMEOUT_SECONDS = envint("WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1)
# Where receivers reach the portal: the links in event payloads are absolute under it.
PORTAL_BASE_URL = os.environ.get("PORTAL_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

# FHIR R4, read-only at /fhir/: the system of the MRN identifier, and search pages (_count).
FHIR_MRN_SYSTEM = os.environ.get("FHIR_MRN_SYSTEM", "urn:lungportal:mrn")
FHIR_PAGE_SIZE = envint("FHIR_PAGE_SIZE", 20, minimum=1)
FHIR_MAX_PAGE_SIZE = envint("FHIR_MAX_PAGE_SIZE", 100, minimum=1)
