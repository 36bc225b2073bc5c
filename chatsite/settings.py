"""Settings: everything comes from the environment (or a `.env` file beside manage.py).

`.env.example` documents every variable. The defaults run one process on SQLite with the
in-memory channel layer; `DATABASE_URL` and `REDIS_URL` switch to PostgreSQL and Redis.
"""

import base64
import hashlib
import os
import sys
from datetime import timedelta
from pathlib import Path

import environ
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from chatsite import oidc as _oidc

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A real environment variable always wins over the file.
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG: bool = env.bool("DEBUG", default=False)

# Development gets a stable throwaway key; production must bring its own.
SECRET_KEY: str = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment (or set DEBUG=1 for local use)."
        )
    SECRET_KEY = "django-insecure-development-only-do-not-deploy"

ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # Daphne first so `runserver` serves websockets too.
    "daphne",
    # Django's admin with a usage page (chatsite/apps.py, conversations/adminsite.py).
    "chatsite.apps.ChatAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    # Login throttling: failed sign-ins per username and address, in the database.
    "axes",
    "conversations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # After sessions, before common: the language comes from the cookie set by the switch
    # in the page (set_language), else from the browser's Accept-Language.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "chatsite.middleware.ContentSecurityPolicyMiddleware",
    # Last: turns a refused sign-in of a locked-out user into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock at BEGIN so
    # two writers queue on `timeout` instead of failing with "database is locked" mid-way.
    _db.setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # Keep each thread's connection open: opening one (SQL functions registered, pragmas
    # run) cost about a millisecond on every database call before, a fifth of a turn's start.
    _db.setdefault("CONN_MAX_AGE", None)
    # A file, not memory: browser tests run Daphne in another process on the same database.
    # One per test process, so two test runs on one machine never share a file.
    _db["TEST"] = {"NAME": str(BASE_DIR / "var" / f"test-db-{os.getpid()}.sqlite3")}
else:
    # Keep connections open between requests and check them before reuse.
    _db.setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    _db.setdefault("CONN_HEALTH_CHECKS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channel layer and cache ----------------------------------------------------------
REDIS_URL: str = env.str("REDIS_URL", default="")
# Which of channels-redis's layers carries the frames between processes: "pubsub" (its
# RedisPubSubChannelLayer, the default) or "core" (RedisChannelLayer). Chosen by measurement
# (docs/performance.md, "Scale-out"): on two processes the pub/sub layer carried every
# stream that one in-memory process carries, the core layer a fraction of them.
CHAT_CHANNEL_LAYER: str = env.str("CHAT_CHANNEL_LAYER", default="pubsub")
if CHAT_CHANNEL_LAYER not in ("pubsub", "core"):
    raise ImproperlyConfigured("CHAT_CHANNEL_LAYER must be pubsub or core.")
# Every Redis socket setting is stated here rather than left to redis-py, whose defaults
# change between major versions: redis-py 8 gave every connection a 5 s read timeout, and
# the core layer's 5 s blocking BZPOPMIN then timed out on every quiet page (channels_redis
# #422). The pub/sub layer polls its subscription with its own short timeout, so the
# socket timeout only bounds a command's answer; the core layer must outwait its BZPOPMIN.
REDIS_SOCKET: dict[str, object] = {
    "socket_connect_timeout": env.float("REDIS_CONNECT_TIMEOUT", default=5.0),
    "socket_timeout": env.float(
        "REDIS_SOCKET_TIMEOUT", default=5.0 if CHAT_CHANNEL_LAYER == "pubsub" else 15.0
    ),
    # A half-open connection (Redis or the network gone without a FIN) is noticed by the
    # kernel's keepalive and by a PING on a subscription idle for this many seconds.
    "socket_keepalive": True,
    "health_check_interval": env.int("REDIS_HEALTH_CHECK_INTERVAL", default=15),
}
if REDIS_URL:
    if CHAT_CHANNEL_LAYER == "pubsub":
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [{"address": REDIS_URL, **REDIS_SOCKET}]},
            }
        }
    else:
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {
                    "hosts": [{"address": REDIS_URL, **REDIS_SOCKET}],
                    "capacity": 1000,
                    "expiry": 30,
                },
            }
        }
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "conversations.layers.LocalChannelLayer",
            "CONFIG": {"capacity": 1000},
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth -----------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Axes first: it refuses a locked-out username+address before any password is checked.
# It needs the request, which the login forms pass; `Client.login` in a test must pass
# `request=HttpRequest()` too (tests mostly use `force_login`, which skips backends).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# After LOGIN_FAILURE_LIMIT wrong passwords for one username from one address, that pair is
# refused (the right password too) for LOGIN_COOLOFF_MINUTES. The pair, not the username
# alone, so that strangers cannot lock a person out; a success clears the count.
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT: int = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Tries during a lockout do not push its end further away, so the page can say when it ends.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "conversations.lockout.lockout_response"
# Failures are kept (and shown in the admin) until their cool-off ends; successful
# sign-ins are not recorded.
AXES_DISABLE_ACCESS_LOG = True
# The client address is the socket's (REMOTE_ADDR): behind a proxy, run Daphne with
# --proxy-headers so that it is the browser's, not the proxy's (docs/security.md).
AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# Single sign-on with OpenID Connect (mozilla-django-oidc), off unless OIDC_RP_CLIENT_ID is
# set; a configuration that cannot work stops the start here (chatsite/oidc.py).
OIDC_ENABLED = False
globals().update(_oidc.settings_from(os.environ))
if OIDC_ENABLED:
    INSTALLED_APPS.append("mozilla_django_oidc")
    # After the password backends: local accounts keep signing in as before.
    AUTHENTICATION_BACKENDS.append("conversations.sso.SingleSignOnBackend")

# --- Internationalisation ---------------------------------------------------------------
# English and Simplified Chinese. `make` compiles locale/*/LC_MESSAGES/*.po into .mo files;
# `make messages` extracts new strings (see docs/translation.md).
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# The language switch is remembered for a year, not just for the browser session.
LANGUAGE_COOKIE_AGE = 365 * 24 * 60 * 60
LANGUAGE_COOKIE_SAMESITE = "Lax"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "chatsite.storage.StaticFilesStorage"
        )
    },
}
# Attachments: on the file system under MEDIA_ROOT (never served as static files: only
# through the view that checks their owner), or in an S3-compatible object store (Tencent
# COS, MinIO, AWS S3) when ATTACHMENTS_S3_BUCKET is set. docs/configuration.md, "Attachments".
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "var" / "media")
ATTACHMENTS_S3_BUCKET: str = env.str("ATTACHMENTS_S3_BUCKET", default="")
if ATTACHMENTS_S3_BUCKET:
    STORAGES["attachments"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": ATTACHMENTS_S3_BUCKET,
            "endpoint_url": env.str("ATTACHMENTS_S3_ENDPOINT_URL", default="") or None,
            "region_name": env.str("ATTACHMENTS_S3_REGION", default="") or None,
            "access_key": env.str("ATTACHMENTS_S3_ACCESS_KEY_ID", default="") or None,
            "secret_key": env.str("ATTACHMENTS_S3_SECRET_ACCESS_KEY", default="") or None,
            "addressing_style": env.str("ATTACHMENTS_S3_ADDRESSING_STYLE", default="") or None,
            "location": env.str("ATTACHMENTS_S3_PREFIX", default=""),
            # Private objects, never overwritten; read back through the app only.
            "default_acl": None,
            "file_overwrite": False,
            "querystring_auth": True,
        },
    }
else:
    STORAGES["attachments"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT, "base_url": None},
    }
CHAT_ATTACHMENT_MAX_BYTES: int = env.int("CHAT_ATTACHMENT_MAX_BYTES", default=10 * 1024 * 1024)
CHAT_ATTACHMENTS_PER_MESSAGE: int = env.int("CHAT_ATTACHMENTS_PER_MESSAGE", default=10)
CHAT_ATTACHMENT_STORAGE_PER_USER: int = env.int(
    "CHAT_ATTACHMENT_STORAGE_PER_USER", default=1024 * 1024 * 1024
)
# Characters of text kept from a text file or a PDF (about 50,000 tokens of English).
CHAT_ATTACHMENT_TEXT_CHARS: int = env.int("CHAT_ATTACHMENT_TEXT_CHARS", default=200_000)
# Uploaded but never sent: removed after this many hours (`manage.py purge_attachments`).
CHAT_ATTACHMENT_UNSENT_HOURS: float = env.float("CHAT_ATTACHMENT_UNSENT_HOURS", default=24)

# Serve straight from the app folders when `collectstatic` has not been run (dev, tests).
WHITENOISE_USE_FINDERS = DEBUG or env.bool("WHITENOISE_USE_FINDERS", default=False)

# --- Security (production values when DEBUG is off) -----------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Sent on every response by chatsite.middleware (Django 5.2 has no CSP of its own). No
# inline script or style anywhere, the admin included; 'self' in connect-src also covers
# ws:/wss: to the same host (CSP Level 3). Replies may not load outside images: a reply
# cannot leak the conversation through an image address.
CONTENT_SECURITY_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    LANGUAGE_COOKIE_SECURE = SESSION_COOKIE_SECURE
    # Behind a TLS proxy that sets X-Forwarded-Proto (docs/security.md): plain HTTP is
    # redirected to HTTPS, and browsers are told to use HTTPS only for a year.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 60 * 60)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    if not SECURE_HSTS_PRELOAD:
        # Asking browsers to preload the domain is a commitment for every site under it,
        # which only its owner can make: off unless chosen, and no warning for that choice.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]

# --- Encryption of API keys at rest ---------------------------------------------------
# Comma-separated Fernet keys: the first encrypts, all decrypt (rotation).
FIELD_ENCRYPTION_KEYS: list[str] = [
    key.strip() for key in env.list("FIELD_ENCRYPTION_KEYS", default=[]) if key.strip()
]
if not FIELD_ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS is not set. Generate one with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`."
        )
    sys.stderr.write(
        "Warning: FIELD_ENCRYPTION_KEYS is not set; API keys are encrypted with a development "
        "key derived from SECRET_KEY. Set FIELD_ENCRYPTION_KEYS before storing real keys.\n"
    )
    FIELD_ENCRYPTION_KEYS = [
        base64.urlsafe_b64encode(
            hashlib.sha256(b"field-encryption:" + SECRET_KEY.encode()).digest()
        ).decode()
    ]
# Fail at start, not at the first saved key; never echo the key itself.
for _position, _key in enumerate(FIELD_ENCRYPTION_KEYS, start=1):
    try:
        Fernet(_key)
    except ValueError:
        raise ImproperlyConfigured(
            f"FIELD_ENCRYPTION_KEYS: key number {_position} is not a Fernet key "
            "(32 url-safe base64-encoded bytes)."
        ) from None

# --- The gateway ----------------------------------------------------------------------
# Instance default credential from the environment (used by users without their own).
CLOUDBASE_API_KEY: str = env.str("CLOUDBASE_API_KEY", default="")
CLOUDBASE_ENV_ID: str = env.str("CLOUDBASE_ENV_ID", default="")
CLOUDBASE_BASE_URL: str = env.str("CLOUDBASE_BASE_URL", default="")
CHAT_DEFAULT_MODEL: str = env.str("CHAT_DEFAULT_MODEL", default="hy3-preview")
# Set by `manage.py serve` when it starts the bundled offline gateway (no key configured).
CHAT_DEMO_GATEWAY_URL: str = env.str("CHAT_DEMO_GATEWAY_URL", default="")
# The model name the offline gateway answers as (conversations.demo.script.DEMO_MODEL).
CHAT_DEMO_MODEL = "offline-demo"

CHAT_MAX_MESSAGE_CHARS: int = env.int("CHAT_MAX_MESSAGE_CHARS", default=32_000)
CHAT_MAX_FRAME_BYTES: int = env.int("CHAT_MAX_FRAME_BYTES", default=256 * 1024)
# Frames per second one socket may send, with bursts up to CHAT_WS_FRAME_BURST; past that
# a frame is refused (`too_many_frames`), and a socket that keeps flooding is closed (4429).
CHAT_WS_FRAMES_PER_SECOND: float = env.float("CHAT_WS_FRAMES_PER_SECOND", default=10.0)
CHAT_WS_FRAME_BURST: int = env.int("CHAT_WS_FRAME_BURST", default=20)
CHAT_DEFAULT_MAX_TOKENS: int = env.int("CHAT_DEFAULT_MAX_TOKENS", default=4096)
# The largest max_tokens a conversation may ask for (the models' output limit).
CHAT_MAX_TOKENS_LIMIT: int = env.int("CHAT_MAX_TOKENS_LIMIT", default=32_000)
# Long conversations (conversations.context): the context window of the credential from the
# environment (database credentials have their own field), whether what no longer fits is
# replaced by a summary the model writes, and how full an overflow leaves the window (a
# fraction: room for several turns before the next cut, so the cut and its summary are
# reused and the cached prefix stays valid).
CHAT_CONTEXT_WINDOW: int = env.int("CHAT_CONTEXT_WINDOW", default=200_000)
CHAT_CONTEXT_SUMMARY: bool = env.bool("CHAT_CONTEXT_SUMMARY", default=True)
CHAT_CONTEXT_REFILL: float = env.float("CHAT_CONTEXT_REFILL", default=0.75)
# The longest summary of left-out messages, in tokens (its request's max_tokens).
CHAT_CONTEXT_SUMMARY_TOKENS: int = env.int("CHAT_CONTEXT_SUMMARY_TOKENS", default=1024)
# How often a streaming reply is written to the database (seconds). Also the heartbeat
# of its lease: a reply whose lease runs out belongs to a dead process.
CHAT_CHECKPOINT_INTERVAL: float = env.float("CHAT_CHECKPOINT_INTERVAL", default=1.0)
CHAT_LEASE_SECONDS: float = env.float("CHAT_LEASE_SECONDS", default=10.0)
# On SIGTERM/SIGINT, how long replies being written may go on before they are saved
# `interrupted` (conversations/lifecycle.py). Below the stop timeouts of systemd (90 s)
# and Kubernetes (30 s), with room for the saves and the sockets' close frames.
CHAT_SHUTDOWN_GRACE: float = env.float("CHAT_SHUTDOWN_GRACE", default=25.0)
CHAT_UPSTREAM_CONNECT_TIMEOUT: float = env.float("CHAT_UPSTREAM_CONNECT_TIMEOUT", default=10.0)
# Longest silence allowed from the gateway, before the first byte and between events.
CHAT_UPSTREAM_READ_TIMEOUT: float = env.float("CHAT_UPSTREAM_READ_TIMEOUT", default=60.0)
# Attempts after the first one, only before any token has arrived.
CHAT_UPSTREAM_RETRIES: int = env.int("CHAT_UPSTREAM_RETRIES", default=2)
CHAT_UPSTREAM_RETRY_BACKOFF: float = env.float("CHAT_UPSTREAM_RETRY_BACKOFF", default=0.5)
# Turns (send, regenerate, edit) per user per clock minute, counted in the cache (shared
# by every process with REDIS_URL). 0 turns the limit off.
CHAT_RATE_LIMIT_PER_MINUTE: int = env.int("CHAT_RATE_LIMIT_PER_MINUTE", default=20)

# --- Logging --------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # The HTTP client logs request lines at INFO; keep them out of the app's log.
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "anthropic": {"level": "WARNING"},
        # Axes narrates every sign-in at INFO; failures and lockouts are WARNINGs.
        "axes": {"level": "WARNING"},
    },
}
