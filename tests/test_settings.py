"""Settings fail loudly on bad values, and are deploy-clean when set right."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "CREDENTIALS_KEY")
    }
    clean.update(
        {
            "DRIFTSYNC_ENV_FILE": "/nonexistent",
            "DJANGO_SETTINGS_MODULE": "driftsync.settings",
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "a-long-random-production-secret-key-0123456789-abcdefghijklmnop",
    "CREDENTIALS_KEY": Fernet.generate_key().decode(),
    "ALLOWED_HOSTS": "driftsync.example.com",
}


def test_check_deploy_is_clean_with_the_production_variables():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "false"}, "SECRET_KEY is required"),
        ({**PRODUCTION, "CREDENTIALS_KEY": ""}, "CREDENTIALS_KEY is required"),
        ({**PRODUCTION, "CREDENTIALS_KEY": "not-a-key"}, "must be Fernet keys"),
        ({"DEBUG": "maybe"}, "DEBUG must be true or false"),
        ({"DEBUG": "true", "Q_WORKERS": "0"}, "Q_WORKERS must be >= 1"),
        ({"DEBUG": "true", "DATABASE_URL": "nosuchdb://x"}, "nosuchdb"),
    ],
)
def test_a_bad_setting_stops_the_start_up_with_a_message(env, message):
    result = manage("check", **env)
    assert result.returncode != 0
    assert message in result.stderr
