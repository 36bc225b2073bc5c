"""Settings: everything comes from the environment (or a `.env` file beside manage.py).

`.env.example` documents every variable. The defaults run one process on SQLite with the
in-memory channel layer; `DATABASE_URL` and `REDIS_URL` switch to PostgreSQL and Redis.
"""

import base64
import hashlib
import os
import sys
from pathlib import Path

import environ
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

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
    "conversations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "capacity": 1000, "expiry": 30},
        }
    }
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth -----------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# --- Internationalisation ---------------------------------------------------------------
LANGUAGE_CODE = "en"
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
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
# Serve straight from the app folders when `collectstatic` has not been run (dev, tests).
WHITENOISE_USE_FINDERS = DEBUG or env.bool("WHITENOISE_USE_FINDERS", default=False)

# --- Security (production values when DEBUG is off) -----------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

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

CHAT_MAX_MESSAGE_CHARS: int = env.int("CHAT_MAX_MESSAGE_CHARS", default=32_000)
CHAT_MAX_FRAME_BYTES: int = env.int("CHAT_MAX_FRAME_BYTES", default=256 * 1024)
CHAT_DEFAULT_MAX_TOKENS: int = env.int("CHAT_DEFAULT_MAX_TOKENS", default=4096)
# The largest max_tokens a conversation may ask for (the models' output limit).
CHAT_MAX_TOKENS_LIMIT: int = env.int("CHAT_MAX_TOKENS_LIMIT", default=32_000)
# How often a streaming reply is written to the database (seconds). Also the heartbeat
# of its lease: a reply whose lease runs out belongs to a dead process.
CHAT_CHECKPOINT_INTERVAL: float = env.float("CHAT_CHECKPOINT_INTERVAL", default=1.0)
CHAT_LEASE_SECONDS: float = env.float("CHAT_LEASE_SECONDS", default=10.0)
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
    },
}
