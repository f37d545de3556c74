"""Test settings: the real settings with safe defaults for a test run."""

import os

os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-0123456789abcdefghijkl")
os.environ.setdefault("CREDENTIALS_KEY", "dGVzdC1jcmVkZW50aWFscy1rZXktMDEyMzQ1Njc4OTA=")
os.environ.setdefault("DRIFTSYNC_ENV_FILE", "/nonexistent")
os.environ.setdefault("Q_SYNC", "false")

from driftsync.settings import *  # noqa: F403

SECURE_SSL_REDIRECT = False
# pytest-django turns DEBUG off; the tests point accounts at loopback sandboxes
# (not through the environment: the subprocesses of test_settings stay clean)
DRIFTSYNC_ALLOW_BASE_URL_OVERRIDE = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING["root"]["level"] = "WARNING"  # noqa: F405

# a file, not memory: the worker-process tests (tests/test_workers.py) share it
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # one file per test process, so two test runs on one machine never share it
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": str(BASE_DIR / "var" / f"test-db-{os.getpid()}.sqlite3")  # noqa: F405
    }
    (BASE_DIR / "var").mkdir(exist_ok=True)  # noqa: F405

# the apps' windows, scaled down for fast tests; the sandboxes' own windows
# are set to match through their control API (tests/connectors/conftest.py)
DRIFTSYNC_RATE_LIMITS = {
    "google": {"window": 0.6, "retry_first": 0.05, "retry_cap": 0.6},
    "hubspot": {"window": 0.1, "search_window": 0.01, "retry_first": 0.1, "retry_cap": 0.1},
    "drift": {"window": 0.1, "retry_first": 0.05, "retry_cap": 0.1},
    "mailchimp": {"retry_first": 0.05, "retry_cap": 0.5},
}
