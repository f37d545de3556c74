"""driftsync settings, all from the environment (and an optional ``.env``).

Bad values fail loudly at start-up rather than at the first sync.
"""

from __future__ import annotations

import os
from pathlib import Path

import environ
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
_env_file = os.environ.get("DRIFTSYNC_ENV_FILE", str(BASE_DIR / ".env"))
if Path(_env_file).is_file():
    env.read_env(_env_file)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    """A yes/no variable; anything else is a mistake worth stopping for."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required unless DEBUG=true (see .env.example)")
    SECRET_KEY = "insecure-debug-only-key-do-not-use-in-production-0123456789abcdef"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

#: Fernet keys (urlsafe base64, 32 bytes) for credentials at rest, newest
#: first; older keys still decrypt, so keys can be rotated.
CREDENTIALS_KEYS = env.list("CREDENTIALS_KEY", default=[])
if not CREDENTIALS_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "CREDENTIALS_KEY is required unless DEBUG=true; make one with `python -c "
            "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
        )
    CREDENTIALS_KEYS = ["ZHJpZnRzeW5jLWRlYnVnLW9ubHkta2V5LTAxMjM0NTY="]
for _key in CREDENTIALS_KEYS:
    try:
        Fernet(_key.encode())
    except ValueError:
        raise ImproperlyConfigured(
            "CREDENTIALS_KEY must be Fernet keys: 32 url-safe base64-encoded bytes each"
        ) from None

INSTALLED_APPS = [
    "driftsync.apps.DriftsyncAdminConfig",  # django.contrib.admin, as driftsync's staff site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.google",
    "allauth.socialaccount.providers.mailchimp",
    "allauth.socialaccount.providers.hubspot",
    "connectors.drift",
    "django_q",
    "connectors",
    "connections",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "driftsync.urls"
WSGI_APPLICATION = "driftsync.wsgi.application"
ASGI_APPLICATION = "driftsync.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "driftsync" / "templates"],
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

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while a worker writes; wait instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
SITE_ID = 1

#: Public URL of this install, used to build webhook and OAuth callback URLs.
PUBLIC_URL = env.str("PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")

#: The webhook inbox's bounds (``connections/webhooks.py``): refused deliveries
#: per client address (and from everyone) in the window, past which they get a
#: 429 and are not stored; days processed/ignored and rejected ones are kept
#: (0: kept forever) before the daily purge deletes them.
WEBHOOK_REJECTED_PER_SOURCE = env.int("WEBHOOK_REJECTED_PER_SOURCE", default=60)
WEBHOOK_REJECTED_TOTAL = env.int("WEBHOOK_REJECTED_TOTAL", default=600)
WEBHOOK_REJECTED_WINDOW_MINUTES = env.int("WEBHOOK_REJECTED_WINDOW_MINUTES", default=10)
WEBHOOK_RETENTION_DAYS = env.int("WEBHOOK_RETENTION_DAYS", default=30)
WEBHOOK_REJECTED_RETENTION_DAYS = env.int("WEBHOOK_REJECTED_RETENTION_DAYS", default=7)

# --- email (alerts to each connection's owners, connections/alerts.py) ------
# EMAIL_URL (smtp+tls://user:password@host:587, consolemail://, ...) or the
# separate EMAIL_* variables; without either, DEBUG prints mails on the
# console and production sends through an SMTP server on localhost:25.
if os.environ.get("EMAIL_URL"):
    _email = env.email_url("EMAIL_URL")
    EMAIL_BACKEND = _email["EMAIL_BACKEND"]
    EMAIL_HOST = _email.get("EMAIL_HOST") or "localhost"
    EMAIL_PORT = int(_email.get("EMAIL_PORT") or 25)
    EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER") or ""
    EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD") or ""
    EMAIL_USE_TLS = bool(_email.get("EMAIL_USE_TLS"))
    EMAIL_USE_SSL = bool(_email.get("EMAIL_USE_SSL"))
else:
    EMAIL_BACKEND = env.str(
        "EMAIL_BACKEND",
        default="django.core.mail.backends."
        + ("console.EmailBackend" if DEBUG else "smtp.EmailBackend"),
    )
    EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
    EMAIL_PORT = env.int("EMAIL_PORT", default=25)
    EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
    EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
    EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL cannot both be on")
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=20)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="driftsync@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
#: a contact that failed this many runs in a row alerts its connection's owners
DRIFTSYNC_ALERT_FAILURES = env.int("DRIFTSYNC_ALERT_FAILURES", default=5)

# --- security (check --deploy is clean when DEBUG is off) -------------------
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# joining the browsers' preload list is the domain owner's decision, not ours
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- allauth -----------------------------------------------------------------
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/admin/"
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_ADAPTER = "connections.auth.NoSignupAccountAdapter"
SOCIALACCOUNT_ADAPTER = "connections.auth.ConnectOnlySocialAccountAdapter"
#: tokens go to the Account (encrypted), never into allauth's plaintext table
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_LOGIN_ON_GET = False


def _oauth_app(name: str) -> dict[str, str]:
    return {
        "client_id": env.str(f"{name}_CLIENT_ID", default=""),
        "secret": env.str(f"{name}_CLIENT_SECRET", default=""),
    }


SOCIALACCOUNT_PROVIDERS = {
    "google": {
        "APP": _oauth_app("GOOGLE"),
        "SCOPE": ["profile", "email", "https://www.googleapis.com/auth/contacts"],
        "AUTH_PARAMS": {"access_type": "offline", "prompt": "consent"},
        "OAUTH_PKCE_ENABLED": True,
    },
    "mailchimp": {"APP": _oauth_app("MAILCHIMP")},
    "hubspot": {
        "APP": _oauth_app("HUBSPOT"),
        # every scope the connector uses (connectors.hubspot.connector.REQUIRED_SCOPES;
        # tests/connectors/test_hubspot_fidelity.py keeps the two in step)
        "SCOPE": [
            "oauth",
            "crm.objects.contacts.read",
            "crm.objects.contacts.write",
            "crm.schemas.contacts.read",
            "crm.schemas.contacts.write",
        ],
    },
    "drift": {"APP": _oauth_app("DRIFT")},
}

# --- django-q2 ---------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
Q_WORKERS = env.int("Q_WORKERS", default=2)
Q_TIMEOUT = env.int("Q_TIMEOUT", default=1800)
if Q_WORKERS < 1 or Q_TIMEOUT < 10:
    raise ImproperlyConfigured("Q_WORKERS must be >= 1 and Q_TIMEOUT >= 10 seconds")
Q_CLUSTER = {
    "name": env.str("Q_NAME", default="driftsync"),
    "workers": Q_WORKERS,
    "timeout": Q_TIMEOUT,
    # retry must exceed timeout, or a long sync is started twice
    "retry": Q_TIMEOUT + 60,
    "max_attempts": 1,
    "catch_up": False,
    "ack_failures": True,
    "save_limit": env.int("Q_SAVE_LIMIT", default=1000),
    "poll": env.float("Q_POLL", default=0.5),
    "label": "Task queue",
    # INFO logs a few lines a second while idle; the demo runs it at WARNING
    "log_level": env.str("Q_LOG_LEVEL", default="INFO"),
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
Q_CLUSTER["sync"] = env_bool("Q_SYNC", False)

# --- driftsync ---------------------------------------------------------------
#: a run that would trash more than this share of a connection's links trashes nothing
DRIFTSYNC_MAX_TRASH_SHARE = env.float("DRIFTSYNC_MAX_TRASH_SHARE", default=0.2)
#: a run's claim on its connection is free again this long after its worker's
#: last heartbeat (it beats every 20 s); see connections.locking
DRIFTSYNC_CLAIM_STALE_SECONDS = env.int("DRIFTSYNC_CLAIM_STALE_SECONDS", default=120)
if DRIFTSYNC_CLAIM_STALE_SECONDS < 60:
    raise ImproperlyConfigured("DRIFTSYNC_CLAIM_STALE_SECONDS must be >= 60 (3 heartbeats)")
#: let an account's base URL point somewhere other than its vendor's hosts (the
#: sandboxes). Always allowed with DEBUG; `check --deploy` warns when this is on.
#: Credentials are sent to that URL: see connectors/hosts.py and docs/security.md.
DRIFTSYNC_ALLOW_BASE_URL_OVERRIDE = env_bool("DRIFTSYNC_ALLOW_BASE_URL_OVERRIDE", False)

#: a run reads each app's field schema again when the account's copy is older
#: than this (seconds); full syncs always read it
DRIFTSYNC_SCHEMA_MAX_AGE = env.int("DRIFTSYNC_SCHEMA_MAX_AGE", default=3600)

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
#: webhook secrets ride in URL paths, which Django's request logger and the
#: server's access log print: every logger and handler that prints a path
#: masks them (driftsync/logging.py)
_MASK = ["mask_webhook_secrets"]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"mask_webhook_secrets": {"()": "driftsync.logging.MaskWebhookSecrets"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "django.server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": _MASK},
        "django.server": {
            "class": "logging.StreamHandler",
            "formatter": "django.server",
            "filters": _MASK,
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "urllib3": {"level": "WARNING"},
        "django.db.backends": {"level": "WARNING"},
        # the task cluster (its INFO is a few lines a second; the demo runs it at WARNING)
        "django-q": {"level": Q_CLUSTER["log_level"]},
        # a logger's filter changes the record before any handler sees it
        "django.request": {"filters": _MASK},
        "django.server": {
            "handlers": ["django.server"],
            "level": "INFO",
            "propagate": False,
            "filters": _MASK,
        },
    },
}

#: Drift's webhook verification token (the Drift app's settings page shows it)
DRIFT_VERIFICATION_TOKEN = env.str("DRIFT_VERIFICATION_TOKEN", default="")
