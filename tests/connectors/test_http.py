"""The shared HTTP layer: what it retries and what it never sends twice."""

from __future__ import annotations

import pytest

from connectors import sandbox
from connectors.base import TransientError
from connectors.http import HttpClient
from connectors.sandbox.control import SandboxControl


@pytest.fixture(scope="module")
def server():
    srv = sandbox.serve(keys=("google",))
    yield srv
    srv.stop()


def fail_with(server, status: int) -> None:
    control = SandboxControl.of(server, "google", timeout=5)
    control.configure(error_rate=1.0, error_status=status)
    control.reset_stats()


def served(server, status: int) -> int:
    stats = SandboxControl.of(server, "google", timeout=5).stats()
    return stats.get(str(status), 0)


def client(server) -> HttpClient:
    http = HttpClient(sandbox.api_base_url(server, "google"), max_attempts=4)
    http.sleep = lambda seconds: None
    return http


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_write_the_app_does_not_deduplicate_is_never_sent_twice_after_a_lost_answer(
    server, status
):
    fail_with(server, status)
    with pytest.raises(TransientError):
        client(server).request(
            "POST", "/people:batchCreateContacts", json={}, retry_ambiguous=False
        )
    assert served(server, status) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_a_refusal_before_any_work_is_retried_even_for_such_a_write(server, status):
    fail_with(server, status)
    with pytest.raises(TransientError):
        client(server).request(
            "POST", "/people:batchCreateContacts", json={}, retry_ambiguous=False
        )
    # 503 within max_attempts; a 429 is waited out within the app's time budget
    assert served(server, status) == (4 if status == 503 else 31)


def test_ordinary_requests_are_retried_on_5xx(server):
    fail_with(server, 500)
    with pytest.raises(TransientError):
        client(server).request("GET", "/contactGroups")
    assert served(server, 500) == 4
