"""Settings, all read from the environment with safe defaults (see README: Configuration)."""
import json
import os
from pathlib import Path

import dj_database_url
from django.conf import global_settings
from django.core.exceptions import ImproperlyConfigured

from basic.core import redis_target
from basic.core.private_files import keep_private, sqlite_path
from basic.realtime.origins import origins_from_allowed_hosts, parse_allowed_origins

BASE_DIR = Path(__file__).resolve().parent.parent
# Local state (the SQLite database, the embedded Redis, metrics, job files): private to the user
# who runs the app, 0700 (basic/core/private_files.py; `make migrate` and runstack create it so).
VAR_DIR = BASE_DIR / "var"


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, "") or default


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def env_bool(name: str, default: bool = False) -> bool:
    """1/true/yes/on or 0/false/no/off (any case); unset or empty is the default; anything else
    stops start-up, so a typo can't silently switch a security setting off."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise ImproperlyConfigured(f"{name}={os.environ[name]!r} is not a boolean: use 1/0, true/false, yes/no or on/off.")


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, "").strip().lower() or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={os.environ[name]!r}: use one of {', '.join(choices)}.")
    return value


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value else default


def env_port(name: str, default: int) -> int:
    """A TCP port, 1-65535; anything else stops start-up."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not (value.isascii() and value.isdigit() and 0 < int(value) < 65536):
        raise ImproperlyConfigured(f"{name}={os.environ[name]!r} is not a port number (1-65535).")
    return int(value)


def env_bytes(name: str, default: int) -> int:
    """A size in bytes, a positive whole number (no unit); anything else stops start-up."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not (value.isascii() and value.isdigit() and int(value) > 0):
        raise ImproperlyConfigured(f"{name}={os.environ[name]!r} is not a size in bytes (a whole number above 0).")
    return int(value)


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def env_json_object(name: str) -> dict:
    """A JSON object (unset or empty: {}); anything else stops start-up."""
    value = os.environ.get(name, "").strip()
    if not value:
        return {}
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ImproperlyConfigured(f"{name} must be a JSON object, e.g. {{\"thumbnails\": {{\"time_limit\": 120}}}}.")
    return parsed


DEBUG = env_bool("DEBUG", False)
# Set by `make run`, basic/ops/stack.py and the tests, whose servers bind 127.0.0.1 only: a promise
# that nothing of this deployment listens beyond loopback, so the built-in key may be used.
LISTEN_LOOPBACK_ONLY = env_bool("LISTEN_LOOPBACK_ONLY", False)
# A fixed key only for local runs; any deployment sets SECRET_KEY.
_LOCAL_ONLY_SECRET_KEY = "insecure-local-only-key-set-SECRET_KEY-in-deployments"
SECRET_KEY = env_str("SECRET_KEY", _LOCAL_ONLY_SECRET_KEY)
if SECRET_KEY == _LOCAL_ONLY_SECRET_KEY and not (DEBUG or LISTEN_LOOPBACK_ONLY):
    raise ImproperlyConfigured(
        "Set SECRET_KEY: the built-in key is public and is only allowed with DEBUG=1 or when every "
        "server listens on 127.0.0.1 only (LISTEN_LOOPBACK_ONLY=1, as `make run` sets). "
        "Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# HTTPS. Behind a TLS-terminating proxy set SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO,https
# (and have the proxy set that header): request.is_secure() is then true, absolute URLs are
# https:// and the API's events_url wss://. See docs/deploy.md.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Probes and scrapers call these over plain HTTP from inside the network.
SECURE_REDIRECT_EXEMPT = [r"^(healthz|readyz|metrics)$"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
_proxy_ssl_header = env_list("SECURE_PROXY_SSL_HEADER", "")
if _proxy_ssl_header and (len(_proxy_ssl_header) != 2 or not _proxy_ssl_header[0].startswith("HTTP_")):
    raise ImproperlyConfigured(
        "SECURE_PROXY_SSL_HEADER: expected HEADER,value with the header in META form, "
        "e.g. HTTP_X_FORWARDED_PROTO,https."
    )
SECURE_PROXY_SSL_HEADER = tuple(_proxy_ssl_header) if _proxy_ssl_header else None

# The port this process's Daphne serves on: `manage.py runstack` and basic/ops/stack.py set it for
# the Daphne they start, the image serves on 8000 (the default). Only the socket Origin default uses it.
PORT = env_port("PORT", 8000)
# Browser origins (scheme://host[:port], port may be *) allowed to open WebSockets; sockets
# without an Origin header (scripts, not browsers) are not affected. Default: the exact origins the
# pages are served on, for every host named in ALLOWED_HOSTS: http://host:PORT, plus https://host
# (443) behind a TLS proxy (SECURE_PROXY_SSL_HEADER), only the https one with SECURE_SSL_REDIRECT.
# Never another port: another app on the same host must not open sockets with our users' cookies.
# Wildcards in ALLOWED_HOSTS are skipped, so ALLOWED_HOSTS=* never lets every site in.
WS_ALLOWED_ORIGINS = env_list("WS_ALLOWED_ORIGINS", ",".join(origins_from_allowed_hosts(
    ALLOWED_HOSTS, port=PORT, https_only=SECURE_SSL_REDIRECT, behind_tls_proxy=SECURE_PROXY_SSL_HEADER is not None)))
if DEBUG and not WS_ALLOWED_ORIGINS:
    WS_ALLOWED_ORIGINS = origins_from_allowed_hosts(["localhost", "127.0.0.1", "[::1]"], port=PORT)
parse_allowed_origins(WS_ALLOWED_ORIGINS)  # refuse to start on a malformed entry

# Operations: /healthz, /readyz, /metrics (basic/ops/health.py, basic/ops/metrics.py, docs/deploy.md).
# /readyz gives each check this long (they run at once); it always answers within 2 s.
READYZ_TIMEOUT = float(env_str("READYZ_TIMEOUT", "1.5"))
if not 0 < READYZ_TIMEOUT <= 1.8:
    raise ImproperlyConfigured("READYZ_TIMEOUT: seconds, more than 0 and at most 1.8.")
# /metrics: with a token, scrapers send `Authorization: Bearer <token>`; without one, only
# clients on loopback (and not forwarded by a proxy) may read it.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")

# The embedded Redis (make run, make test) exports REDIS_URL for every process it starts.
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# Redis Sentinel (README: Redis Sentinel): with REDIS_SENTINELS ("host:port,…") every Redis client
# connects to the master the sentinels name; REDIS_URL then gives only the database, password and
# options, and CELERY_BROKER_URL must be unset or kombu's sentinel:// form (basic/core/redis_target.py).
REDIS_SENTINELS = redis_target.parse_sentinels(
    env_str("REDIS_SENTINELS", ""), env_str("REDIS_SENTINEL_MASTER", "mymaster"),
    env_str("REDIS_SENTINEL_PASSWORD", ""))
redis_target.check_url(REDIS_URL, REDIS_SENTINELS)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "rest_framework.authtoken",  # only for migration basic/0005, which hashes its plain tokens away
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_celery_beat",  # schedules: periodic tasks in the database (basic/jobs/schedules.py)
    "basic",
]

MIDDLEWARE = [
    # One log line per request (basic/ops/request_log.py); then /healthz, /readyz and /metrics,
    # answered before host validation and the HTTPS redirect, which probes can't satisfy.
    "basic.ops.request_log.RequestLogMiddleware",
    "basic.ops.views.OpsEndpointsMiddleware",
    # Every answer under /api/ is JSON, DEBUG's error pages included (basic/api/errors.py).
    "basic.api.errors.JsonErrorsUnderApiMiddleware",
    # A body in a charset forms can't be decoded in is a 400 before the CSRF check reads it.
    "basic.api.parsers.DeclaredCharsetMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Django's, its storage made only when a message is used (basic/core/lazy_messages.py).
    "basic.core.lazy_messages.LazyMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "app.urls"
ASGI_APPLICATION = "app.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("DATABASE_POOL", False):
    # Web processes (basic/ops/stack.py sets DATABASE_POOL=1 for Daphne): a socket's connect or a
    # request takes a pooled connection instead of opening one, which costs a PostgreSQL backend
    # process each time (CONN_MAX_AGE=0). Not for gevent workers: a pool would make their
    # greenlets queue for connections (docs/deploy.md, Database connections).
    DATABASES["default"]["OPTIONS"] = {
        "pool": {"min_size": 2, "max_size": env_int("DATABASE_POOL_MAX_SIZE", 20), "timeout": 10},
    }
# Connections a process keeps once closed, for the next thread or task greenlet to open
# (basic/core/kept_connections.py): opening one costs ~0.65 ms of CPU on SQLite, a few ms and a
# server process on PostgreSQL. Not with Django's pool (DATABASE_POOL). 0: every close closes.
KEPT_DATABASE_CONNECTIONS = env_int("KEPT_DATABASE_CONNECTIONS", 32)
if not 0 <= KEPT_DATABASE_CONNECTIONS <= 1024:
    raise ImproperlyConfigured(f"KEPT_DATABASE_CONNECTIONS={KEPT_DATABASE_CONNECTIONS} must be 0-1024.")
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and "pool" not in DATABASES["default"].get(
        "OPTIONS", {}):
    DATABASES["default"]["ENGINE"] = "basic.core.postgres_kept"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["ENGINE"] = "basic.core.sqlite_kept"
    # WAL lets the report's streaming read run while other greenlets and the web process write.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
# Static files are served straight from the apps (no collectstatic step); STATIC_ROOT is only
# for deployments that want collectstatic.
STATIC_ROOT = os.environ.get("STATIC_ROOT") or None
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
# Every job's files: MEDIA_ROOT/jobs/<job id>/ (uploads in input/, outputs beside them).
JOBS_DIR = MEDIA_ROOT / "jobs"
# At every start: var/ and JOBS_DIR 0700, a SQLite database 0600 (and a new one as it is created,
# basic/apps.py), those that exist and are ours. Tokens and users' files are not for other accounts.
_on_sqlite = DATABASES["default"]["ENGINE"] == "basic.core.sqlite_kept"
_sqlite_file = sqlite_path(DATABASES["default"]["NAME"]) if _on_sqlite else None
keep_private(dirs=[VAR_DIR, JOBS_DIR], sqlite_files=[_sqlite_file] if _sqlite_file else [])
# The modules that register job kinds (basic/jobs/registry.py); add your own here.
JOB_KIND_MODULES = env_list(
    "JOB_KIND_MODULES", "basic.kinds.students_by_age,basic.kinds.thumbnails,basic.kinds.page_fetch"
) + env_list("JOB_KIND_EXTRA_MODULES", "")

# Job policies (basic/jobs/registry.py, README "Job policies"): how long a job may run unless its
# kind says otherwise, and how long after that a CPU job that ignores the stop is killed.
JOB_TIME_LIMIT_SECONDS = env_int("JOB_TIME_LIMIT_SECONDS", 3600)
JOB_TIME_LIMIT_GRACE_SECONDS = env_int("JOB_TIME_LIMIT_GRACE_SECONDS", 30)
# Per-deployment overrides of a kind's policies, a JSON object: {"thumbnails": {"time_limit": 120},
# "page_fetch": {"queue": "cpu"}}. Checked against the kinds when they load (a typo stops start-up).
JOB_KIND_POLICIES = env_json_object("JOB_KIND_POLICIES")
# The CPU queue's prefork worker (`make run`, docker-compose.yml): processes (0: one per core) and
# their niceness, so computing jobs yield the cores to the web process and the I/O worker.
# The highest priority (0-9, 9 first) a caller who is not staff may give a job; the farthest ahead
# a start may be delayed.
JOB_PRIORITY_MAX_USER = env_int("JOB_PRIORITY_MAX_USER", 6)
JOB_MAX_DELAY_DAYS = env_int("JOB_MAX_DELAY_DAYS", 30)
if not 0 <= JOB_PRIORITY_MAX_USER <= 9 or JOB_MAX_DELAY_DAYS < 1:
    raise ImproperlyConfigured("JOB_PRIORITY_MAX_USER must be 0-9 and JOB_MAX_DELAY_DAYS at least 1.")
CPU_WORKER_CONCURRENCY = env_int("CPU_WORKER_CONCURRENCY", 0)
CPU_WORKER_NICE = env_int("CPU_WORKER_NICE", 10)
for _name in ("JOB_TIME_LIMIT_SECONDS", "JOB_TIME_LIMIT_GRACE_SECONDS"):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1 (seconds).")
if CPU_WORKER_CONCURRENCY < 0 or not 0 <= CPU_WORKER_NICE <= 19:
    raise ImproperlyConfigured("CPU_WORKER_CONCURRENCY must be >= 0 and CPU_WORKER_NICE 0-19.")
# Daphne processes serving the one web port under `make run` and compose's `web` (basic/ops/web_pool.py):
# one per core by default, since a Daphne process runs on one core.
WEB_PROCESSES = env_int("WEB_PROCESSES", os.cpu_count() or 1)
if not 1 <= WEB_PROCESSES <= 256:
    raise ImproperlyConfigured(f"WEB_PROCESSES={WEB_PROCESSES} must be 1-256.")
# Threads each web process keeps for REST requests, each keeping its SQLite connection (a new one
# costs ~0.65 ms of CPU); a request that finds none free waits for one while they keep finishing
# requests, else (none finished for 0.2 s) gets a thread of its own, as Django gives every request.
# 0: always a thread of its own (basic/core/kept_threads.py).
WEB_REQUEST_THREADS = env_int("WEB_REQUEST_THREADS", 32)
if not 0 <= WEB_REQUEST_THREADS <= 1024:
    raise ImproperlyConfigured(f"WEB_REQUEST_THREADS={WEB_REQUEST_THREADS} must be 0-1024.")

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

# Limits against hostile clients (README: Configuration). Each answers with a 4xx `{"detail": …}`
# or, on sockets, an error frame and a 44xx close code.
API_MAX_PAGE_SIZE = env_int("API_MAX_PAGE_SIZE", 500)  # largest `limit` of any list endpoint
STUDENT_GENERATE_RATE = env_str("STUDENT_GENERATE_RATE", "10/min")  # per user
STUDENTS_MAX = env_int("STUDENTS_MAX", 1_000_000)  # generate stops here (409)
LOGIN_RATE = env_str("LOGIN_RATE", "10/min")  # sign-in attempts per client IP and per username
CHAT_ALLOW_ANONYMOUS = env_bool("CHAT_ALLOW_ANONYMOUS", False)  # /ws/chat/ without sign-in (/chat/ always is)
WS_MAX_PER_USER = env_int("WS_MAX_PER_USER", 100)  # open sockets per signed-in user
WS_MAX_ANONYMOUS_PER_IP = env_int("WS_MAX_ANONYMOUS_PER_IP", 1000)  # anonymous sockets per client IP
WS_RESUME_RATE_PER_SECOND = float(env_str("WS_RESUME_RATE_PER_SECOND", "5"))  # resume frames per socket
WS_RESUME_BURST = env_int("WS_RESUME_BURST", 10)
WS_RESUME_STRIKES = env_int("WS_RESUME_STRIKES", 10)  # refused resume frames before close 4429
WS_MAX_UNSENT_BYTES = env_int("WS_MAX_UNSENT_BYTES", 4 * 1024 * 1024)  # a socket that stops reading: 4008
# Sockets being opened (basic/realtime/handshake_gate.py): this many handshakes run at once per
# process, the rest wait in arrival order. While the socket longest in line has waited more than the
# max, new arrivals are refused at once (503, JSON reason, Retry-After); one let in whose turn has
# not come within twice the max is refused the same way, before Daphne's 10 s connect timeout.
WS_HANDSHAKES_AT_ONCE = env_int("WS_HANDSHAKES_AT_ONCE", 64)
WS_HANDSHAKE_MAX_WAIT_SECONDS = float(env_str("WS_HANDSHAKE_MAX_WAIT_SECONDS", "4"))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so an unauthenticated call gets 401 with `WWW-Authenticate: Token`.
        "basic.accounts.authentication.ApiTokenAuthentication",  # hashed keys (basic/accounts/tokens.py)
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_RATES": {
        "job_trigger": env_str("JOB_TRIGGER_RATE", "30/min"),
        "student_generate": STUDENT_GENERATE_RATE,
    },
    # drf-spectacular's, plus every error answer each operation can give (basic/api/openapi.py).
    "DEFAULT_SCHEMA_CLASS": "basic.api.openapi.ApiAutoSchema",
    "EXCEPTION_HANDLER": "basic.api.errors.api_exception_handler",
    # DRF's JSON, form and multipart parsers and JSON renderer, made unbreakable by any body or echo;
    # the negotiation swaps them in even for views naming DRF's own (basic/api/parsers.py).
    "DEFAULT_PARSER_CLASSES": ["basic.api.parsers.JsonParser", "basic.api.parsers.FormParser",
                               "basic.api.parsers.MultiPartParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "basic.api.parsers.ParserNegotiation",
    "DEFAULT_RENDERER_CLASSES": ["basic.api.renderers.JsonRenderer", "rest_framework.renderers.BrowsableAPIRenderer"],
    "DEFAULT_PAGINATION_CLASS": "basic.api.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Live jobs API",
    "DESCRIPTION": "Start long jobs, watch them live over WebSockets, download their reports.",
    "VERSION": "1.0.0",
    # Swagger UI from the installed sidecar package, not a CDN: deployments may be offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Request bodies as they are accepted (uploads are binary parts), apart from the answers.
    "COMPONENT_SPLIT_REQUEST": True,
    # The schema documents the API, not the schema endpoint itself.
    "SERVE_INCLUDE_SCHEMA": False,
    # One name for the set of registered job kinds (Job, Schedule), not a generated Kind170Enum.
    "ENUM_NAME_OVERRIDES": {"JobKindEnum": "basic.jobs.registry.kind_choices"},
    # ...and each kind's own value, in the per-kind start shapes, PageFetchKindEnum and so on.
    "POSTPROCESSING_HOOKS": ["basic.api.openapi.name_kind_enums", "drf_spectacular.hooks.postprocess_schema_enums"],
}

# One deployment's namespace in a shared Redis: cache keys, channel-layer groups and limit keys.
REDIS_KEY_PREFIX = env_str("CHANNEL_PREFIX", "jobs")

# Shared by every web process, so per-user throttles hold across a scaled-out deployment.
CACHES = {
    "default": {
        **redis_target.cache_settings(REDIS_URL, REDIS_SENTINELS),
        "KEY_PREFIX": REDIS_KEY_PREFIX,
    }
}

# Live fan-out only; job history lives in Redis Streams (basic/jobs/event_store.py).
# The pub/sub layer holds one subscriber connection per process instead of one pooled
# connection per in-flight receive, so hundreds of sockets connecting at once stay well under
# redis-py 8's pool cap (docs/design.md trap 5; measured in bench/bench_socket_storm.py).
# CHANNEL_LAYER=core selects the stock RedisChannelLayer, kept only for that benchmark.
CHANNEL_LAYER_BACKENDS = {
    # The pub/sub layer made to survive Redis restarts and to decode a group message once per
    # process (basic/realtime/channel_layer.py); "pubsub" is the stock one, kept for benchmarks.
    "resilient": "basic.realtime.channel_layer.ResilientPubSubChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
    "core": "channels_redis.core.RedisChannelLayer",
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": CHANNEL_LAYER_BACKENDS[env_str("CHANNEL_LAYER", "resilient")],
        "CONFIG": {"hosts": [redis_target.channel_layer_host(REDIS_URL, REDIS_SENTINELS)], "prefix": REDIS_KEY_PREFIX},
    }
}

# Job event history (Redis Streams) and the worker's publisher.
JOB_EVENTS_MAXLEN = env_int("JOB_EVENTS_MAXLEN", 5000)
JOB_EVENTS_TTL_SECONDS = env_int("JOB_EVENTS_TTL_SECONDS", 24 * 3600)
JOB_EVENTS_REDIS_MAX_CONNECTIONS = env_int("JOB_EVENTS_REDIS_MAX_CONNECTIONS", 50)
JOB_PROGRESS_MIN_INTERVAL = float(env_str("JOB_PROGRESS_MIN_INTERVAL", "0.1"))
# Issue 19 (jobs at the speed of Celery; bench/bench_jobs.py). What a fast `ctx.progress` costs:
# the lease is renewed and the cancel flag read at every progress event sent and otherwise at most
# every JOB_CHECK_INTERVAL_SECONDS (a cancel of a body in a tight loop lands within it); the row's
# progress is written at most every JOB_PROGRESS_DB_INTERVAL_SECONDS (events still go out at up to
# 1/JOB_PROGRESS_MIN_INTERVAL a second; `force` writes every step).
JOB_CHECK_INTERVAL_SECONDS = float(env_str("JOB_CHECK_INTERVAL_SECONDS", "0.1"))
JOB_PROGRESS_DB_INTERVAL_SECONDS = float(env_str("JOB_PROGRESS_DB_INTERVAL_SECONDS", "1"))
# Progress updates one worker process sends a second across all the bodies it runs (each update is
# an event, a lease renewal and a cancel read); with many running, each one's updates and checks are
# spaced out to share it (basic/jobs/progress_budget.py).
JOB_PROGRESS_UPDATES_PER_SECOND = env_int("JOB_PROGRESS_UPDATES_PER_SECOND", 200)
if JOB_PROGRESS_UPDATES_PER_SECOND < 1:
    raise ImproperlyConfigured("JOB_PROGRESS_UPDATES_PER_SECOND must be at least 1")
# "redis" (default, gevent-safe) or "async_to_sync" (the naive seed helper, kept as a baseline).
JOB_EVENT_PUSHER = env_str("JOB_EVENT_PUSHER", "redis")
# A running job renews its lease every chunk; a job whose lease lapsed (its worker died) is
# re-queued by any live worker's recovery loop within about this many seconds.
JOB_LEASE_SECONDS = env_int("JOB_LEASE_SECONDS", 30)
# The recovery sweep (every JOB_LEASE_SECONDS / 2, in every worker) sends a QUEUED job again when
# its message was lost: after JOB_REQUEUE_AFTER_SECONDS in the queue, or JOB_RESERVED_SECONDS after
# a worker reserved it without starting it (basic/jobs/queue_markers.py).
JOB_REQUEUE_AFTER_SECONDS = env_int("JOB_REQUEUE_AFTER_SECONDS", 30)
JOB_RESERVED_SECONDS = env_int("JOB_RESERVED_SECONDS", 30)
# A worker process says it is alive this often (a third of it); one silent this long is taken for
# dead, and the messages it held (delayed starts, retries waiting for their time) are sent again.
WORKER_ALIVE_SECONDS = env_int("WORKER_ALIVE_SECONDS", 10)
# How often a job socket re-reads the job's history while it waits for the end.
JOB_SOCKET_RESYNC_SECONDS = float(env_str("JOB_SOCKET_RESYNC_SECONDS", "5"))
# How long a finished job may lack its terminal event in the history before sockets report the
# end from the database instead (the pusher retries a terminal event for about 6 s).
JOB_TERMINAL_EVENT_GRACE_SECONDS = float(env_str("JOB_TERMINAL_EVENT_GRACE_SECONDS", "10"))
# Retention and quota (basic/jobs/retention.py): finished jobs older than JOB_RETENTION_DAYS are
# deleted with their files and events by a sweep each worker runs every
# JOB_RETENTION_SWEEP_SECONDS (and `manage.py sweep_jobs`); 0 days keeps jobs forever, 0 seconds
# leaves the sweep to the command. A user whose jobs store JOB_OUTPUT_QUOTA_MB or more can start
# no new job (409) until some are deleted or expire; 0 means no quota.
JOB_RETENTION_DAYS = env_int("JOB_RETENTION_DAYS", 7)
JOB_RETENTION_SWEEP_SECONDS = env_int("JOB_RETENTION_SWEEP_SECONDS", 3600)
JOB_OUTPUT_QUOTA_MB = env_int("JOB_OUTPUT_QUOTA_MB", 1024)
# Rows per report chunk: two statements and one string each (bench/bench_report.py).
REPORT_CHUNK_SIZE = env_int("REPORT_CHUNK_SIZE", 10000)
# Slows each report chunk down, for demos and tests that need a job to stay running.
REPORT_CHUNK_DELAY = float(env_str("REPORT_CHUNK_DELAY", "0"))

# Thumbnails (basic/kinds/thumbnails.py).
THUMBNAIL_MAX_BYTES = env_int("THUMBNAIL_MAX_BYTES", 20 * 1024 * 1024)
THUMBNAIL_MAX_PIXELS = env_int("THUMBNAIL_MAX_PIXELS", 50_000_000)
# The largest request body the web server reads (basic/realtime/body_limit.py): a bigger one is a
# 413 before it is read. By default the largest legitimate body: a thumbnails upload (the image, the
# other fields up to Django's DATA_UPLOAD_MAX_MEMORY_SIZE, 64 KiB for the multipart framing).
# deploy/nginx.conf.template's client_max_body_size is the same setting (docker-compose.yml).
REQUEST_MAX_BODY_BYTES = env_bytes(
    "REQUEST_MAX_BODY_BYTES", THUMBNAIL_MAX_BYTES + global_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 64 * 1024)
# Cached page fetch (basic/kinds/page_fetch.py). Only public addresses are fetched;
# PAGE_FETCH_ALLOWED_HOSTS ("host:port,…") exempts named hosts, e.g. a private test server.
PAGE_CACHE_TTL_SECONDS = env_int("PAGE_CACHE_TTL_SECONDS", 30)
PAGE_FETCH_MAX_BYTES = env_int("PAGE_FETCH_MAX_BYTES", 5 * 1024 * 1024)
PAGE_FETCH_TIMEOUT_SECONDS = float(env_str("PAGE_FETCH_TIMEOUT_SECONDS", "10"))
PAGE_FETCH_ALLOWED_HOSTS = env_list("PAGE_FETCH_ALLOWED_HOSTS", "")

# Chat limits.
CHAT_MAX_MESSAGE_BYTES = env_int("CHAT_MAX_MESSAGE_BYTES", 4096)
CHAT_RATE_PER_SECOND = float(env_str("CHAT_RATE_PER_SECOND", "10"))
CHAT_RATE_BURST = env_int("CHAT_RATE_BURST", 20)
# Rate-limited frames tolerated (each answered with an error frame) before closing with 4429.
CHAT_RATE_STRIKES = env_int("CHAT_RATE_STRIKES", 20)
SEED_CHAT_ROOM = "seed"
# Each room's recent messages, kept in Redis so sockets get what was said while their web
# process's subscriber connection was reconnecting (basic/realtime/chat_history.py): at most this many,
# for this long after the room's last message.
CHAT_HISTORY_MAXLEN = env_int("CHAT_HISTORY_MAXLEN", 500)
CHAT_HISTORY_TTL_SECONDS = env_int("CHAT_HISTORY_TTL_SECONDS", 3600)

# Celery: the job table is the source of truth, so results are not stored.
CELERY_BROKER_URL = redis_target.broker_url(env_str("CELERY_BROKER_URL", ""), REDIS_URL, REDIS_SENTINELS)
CELERY_BROKER_TRANSPORT = redis_target.broker_transport(CELERY_BROKER_URL)  # one Redis client a channel
# QUEUE_MARKERS_WITH_MESSAGE=1: a job's queue marker is written with its message, in the same round
# trip (basic/jobs/queue_markers.py), when the broker is REDIS_URL's Redis. Off by default: a send
# that ran on a master killed before it answered leaves that marker for hours on a job the start
# then failed (the chaos soak found one); the default writes it in two steps around the send.
QUEUE_MARKERS_WITH_MESSAGE = (env_bool("QUEUE_MARKERS_WITH_MESSAGE") and CELERY_BROKER_TRANSPORT is not None
                              and redis_target.broker_is_redis_url(env_str("CELERY_BROKER_URL", ""), REDIS_URL))
CELERY_TASK_IGNORE_RESULT = True
# No backend is configured, so Celery's (a no-op) is shared: otherwise it is built again for every
# thread, and every gevent greenlet is one, so once per task (~5% of a worker's CPU, issue 19).
CELERY_RESULT_BACKEND_THREAD_SAFE = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_TIMEOUT = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Longer than the longest job, or Redis hands a running job to a second worker.
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 6 * 3600),
    "socket_connect_timeout": 0.8,
    "socket_timeout": 5,
    "max_connections": env_int("CELERY_BROKER_MAX_CONNECTIONS", 50),
    # A list per priority (jobs' 0-9, basic/jobs/services.py): workers take the highest first.
    "priority_steps": list(range(10)),
    **redis_target.broker_transport_options(REDIS_SENTINELS),
}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Schedules (basic/jobs/schedules.py): `celery beat` reads periodic tasks from the database; it looks
# for new or changed ones at least every CELERY_BEAT_MAX_LOOP_INTERVAL seconds.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_MAX_LOOP_INTERVAL = float(env_str("CELERY_BEAT_MAX_LOOP_INTERVAL", "5"))
CELERY_TIMEZONE = TIME_ZONE
SCHEDULE_MIN_EVERY_SECONDS = env_int("SCHEDULE_MIN_EVERY_SECONDS", 10)  # the shortest `every` allowed
SCHEDULES_MAX_PER_USER = env_int("SCHEDULES_MAX_PER_USER", 50)  # then 409

# LOG_FORMAT=json: one JSON object per line (ts, level, logger, message and any `extra` fields),
# for log shippers; text (the default) is for people. basic/ops/log_format.py.
LOG_FORMAT = env_choice("LOG_FORMAT", "text", ("text", "json"))
CELERY_TASK_LOG_LEVEL = env_choice("CELERY_TASK_LOG_LEVEL", "warning", ("debug", "info", "warning", "error")).upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"()": "basic.ops.log_format.TextFormatter"},
        "json": {"()": "basic.ops.log_format.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "daphne": {"level": "WARNING"},
        # Celery's two lines per task ("received", "succeeded in"): the worker logs `job started` and
        # `job done` (or failed, cancelled) of its own, with the kind, owner and duration. At INFO
        # they were a third of the gevent worker's logging, 2% of its CPU per trivial job (issue 19).
        **{name: {"level": CELERY_TASK_LOG_LEVEL} for name in ("celery.app.trace", "celery.worker.strategy")},
    },
}

# Idempotency keys (issue 20): basic/jobs/idempotency.py
# A job start's `Idempotency-Key` answers with its first job for this many hours (a whole number
# above 0; anything else stops start-up); older keys count as new and the retention sweep purges them.
_idempotency_hours = env_str("JOB_IDEMPOTENCY_HOURS", "24").strip()
if not (_idempotency_hours.isascii() and _idempotency_hours.isdigit() and int(_idempotency_hours) > 0):
    raise ImproperlyConfigured(
        f"JOB_IDEMPOTENCY_HOURS={_idempotency_hours!r} is not a number of hours (a whole number above 0).")
JOB_IDEMPOTENCY_HOURS = int(_idempotency_hours)

# Batches (basic/jobs/batches.py): at most this many jobs in one `POST /api/batches/` (or one
# multi-image thumbnails form), 1-1000; more is a 400. A batch counts as one start against
# JOB_TRIGGER_RATE, so this bounds what one start can queue.
_batch_max_jobs = env_str("BATCH_MAX_JOBS", "100").strip()
if not (_batch_max_jobs.isascii() and _batch_max_jobs.isdigit() and 1 <= int(_batch_max_jobs) <= 1000):
    raise ImproperlyConfigured(f"BATCH_MAX_JOBS={_batch_max_jobs!r} is not a whole number from 1 to 1000.")
BATCH_MAX_JOBS = int(_batch_max_jobs)
# Browsers on CORS_ALLOWED_ORIGINS may send the key and read whether an answer was a replay.
CORS_ALLOW_HEADERS = ("accept", "authorization", "content-type", "user-agent", "x-csrftoken",
                      "x-requested-with", "idempotency-key")  # django-cors-headers' defaults, and the key
CORS_EXPOSE_HEADERS = ["Location", "Idempotent-Replayed"]
