"""``manage.py sandbox`` as a new user runs it: in a terminal, then Ctrl-C."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "local-sandbox-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def manage(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONUNBUFFERED": "1",
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


class Output:
    """The command's output lines, read in the background."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert process.stdout is not None
        stream = process.stdout
        self.reader = threading.Thread(
            target=lambda: [self.lines.put(line) for line in stream], daemon=True
        )
        self.reader.start()

    def until(self, pattern: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(self.seen)}")

    def rest(self, timeout: float = 10.0) -> str:
        """Everything up to the end of the output (the process has exited)."""
        self.reader.join(timeout)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "".join(self.seen)


@pytest.fixture
def running() -> Iterator[tuple[subprocess.Popen[str], Output, int]]:
    port = free_port()
    process = manage("sandbox", "--port", str(port), "--token", TOKEN, "--demo")
    output = Output(process)
    try:
        yield process, output, port
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_help_explains_prefixes_tokens_and_the_control_api() -> None:
    process = manage("sandbox", "--help")
    text, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    for words in ("--host", "--port", "--token", "--demo", "/mailchimp", "API base URL", "Ctrl-C"):
        assert words in text
    assert "contacts/bulk" in text


def test_it_serves_all_four_apps_with_the_token_and_stops_cleanly_on_ctrl_c(
    running: tuple[subprocess.Popen[str], Output, int],
) -> None:
    process, output, port = running
    output.until(r"Press Ctrl-C")
    printed = "".join(output.seen)
    bases = re.findall(r"API base URL:\s+(\S+)", printed)
    assert len(bases) == 4
    mailchimp = next(b for b in bases if "/mailchimp" in b)
    assert mailchimp == f"http://127.0.0.1:{port}/mailchimp/3.0"
    assert f"http://127.0.0.1:{port}/hubspot/_sandbox/" in printed

    answer = requests.get(
        f"{mailchimp}/lists", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert answer.status_code == 200
    [audience] = answer.json()["lists"]
    assert audience["id"]
    assert audience["stats"]["member_count"] >= 15, "the demo seeded members"
    refused = requests.get(
        f"{mailchimp}/lists", headers={"Authorization": "Bearer nope"}, timeout=10
    )
    assert refused.status_code == 401

    hubspot = next(b for b in bases if "/hubspot" in b)
    contacts = requests.get(
        f"{hubspot}/crm/v3/objects/contacts",
        params={"limit": 100, "properties": "email"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert contacts.status_code == 200
    emails = {r["properties"].get("email") for r in contacts.json()["results"]}
    assert "ada.lovelace@example.com" in emails
    assert None in emails, "one demo contact has no email"

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0  # a hang guard: generous on a loaded machine
    assert "Sandbox stopped." in output.rest()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{mailchimp}/lists", timeout=2)


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        process = manage("sandbox", "--port", str(port))
        text, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert f"Cannot listen on 127.0.0.1:{port}" in text
