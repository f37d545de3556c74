"""`make run` with a busy port: a clear message that names the way out, a
non-zero exit, and nothing started or printed as if it were running."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        yield held.getsockname()[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "DRIFTSYNC_ENV_FILE": "/nonexistent",
    }


def test_demo_refuses_a_busy_web_port_before_starting_anything(busy_port, tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "demo", "--port", str(busy_port),
         "--sandbox-port", str(free_port())],
        cwd=ROOT, env=environment(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert f"Port {busy_port} on 127.0.0.1 (for the web server) is in use" in result.stderr
    assert f"make run PORT={busy_port + 1}" in result.stderr
    assert "driftsync is running" not in result.stdout
    assert "Traceback" not in result.stderr


def test_make_run_refuses_a_busy_sandbox_port_with_the_variable_to_change(busy_port, tmp_path):
    result = subprocess.run(
        ["make", "-s", "run", f"PORT={free_port()}", f"SANDBOX_PORT={busy_port}"],
        cwd=ROOT, env=environment(tmp_path), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    assert "(for the sandbox APIs) is in use" in result.stderr
    assert f"make run SANDBOX_PORT={busy_port + 1}" in result.stderr
    assert "log in as" not in result.stdout
    assert "Traceback" not in result.stderr


def test_the_env_make_run_writes_lets_manage_py_commands_run_beside_it(tmp_path):
    (tmp_path / "Makefile").write_text((ROOT / "Makefile").read_text())
    (tmp_path / "requirements.txt").write_text((ROOT / "requirements.txt").read_text())
    subprocess.run(["make", "-s", ".env"], cwd=tmp_path, check=True, capture_output=True)
    written = (tmp_path / ".env").read_text()
    assert "DEBUG=true" in written
    unset = ("DEBUG", "SECRET_KEY", "CREDENTIALS_KEY", "DJANGO_SETTINGS_MODULE")
    bare = {k: v for k, v in os.environ.items() if k not in unset}
    command = [sys.executable, "manage.py", "check"]
    beside = subprocess.run(
        command, cwd=ROOT, env={**bare, "DRIFTSYNC_ENV_FILE": str(tmp_path / ".env")},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert beside.returncode == 0, beside.stderr
    # without it (production), the secrets are still required
    production = subprocess.run(
        command, cwd=ROOT, env={**bare, "DRIFTSYNC_ENV_FILE": "/nonexistent"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert production.returncode != 0
    assert "SECRET_KEY is required" in production.stderr
    # made once: a second `make run` keeps the key
    subprocess.run(["make", "-s", ".env"], cwd=tmp_path, check=True, capture_output=True)
    assert (tmp_path / ".env").read_text() == written


def test_the_demo_keeps_the_task_cluster_quiet(tmp_path):
    """django-q logs a few lines a second at INFO: the demo's banner would
    scroll away. With the demo's Q_LOG_LEVEL its logger says warnings only."""
    env = {**environment(tmp_path), "Q_LOG_LEVEL": "WARNING"}
    code = "import logging; print(logging.getLogger('django-q').getEffectiveLevel())"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "30"  # WARNING
