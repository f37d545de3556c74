"""Rate limits as the apps really answer them: 429 without Retry-After, in
each app's own window or connection limit (docs/api-fidelity.md)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from connectors.base import ConnectorError, TransientError
from connectors.http import retry_after_seconds
from connectors.sandbox.control import SandboxControl as Control

from .conftest import MakeConnector, http_client

#: a cheap authenticated read per app (path under the API base URL)
READS = {
    "google": ("GET", "/contactGroups", None),
    "hubspot": ("GET", "/crm/v3/properties/contacts", None),
    "drift": ("GET", "/contacts/attributes", None),
    "mailchimp": ("GET", "/lists", None),
}


def raw(sandbox: Control, token: str, method: str = "", path: str = "", body: Any = None):
    m, p, b = READS[sandbox.key]
    return requests.request(
        method or m,
        sandbox.base_url + (path or p),
        json=body if body is not None else b,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


@pytest.fixture
def sandbox(control: Callable[[str], Control], request: pytest.FixtureRequest) -> Any:
    made: list[Control] = []

    def get(key: str) -> Control:
        ctl = control(key)
        ctl.call("POST", "/reset")
        made.append(ctl)
        return ctl

    yield get
    for ctl in made:  # back to the real app's limits
        ctl.call("POST", "/config/defaults", {})


def test_sandboxes_default_to_the_real_limits(sandbox: Any) -> None:
    assert sandbox("google").call("POST", "/config/defaults", {})["rate_limit"] == 90
    hubspot = sandbox("hubspot").call("POST", "/config/defaults", {})
    assert (hubspot["rate_limit"], hubspot["rate_window"]) == (100, 10.0)
    assert hubspot["search_rate_limit"] == 4
    mailchimp = sandbox("mailchimp").call("POST", "/config/defaults", {})
    assert (mailchimp["rate_limit"], mailchimp["concurrency_limit"]) == (0, 10)
    for key in ("google", "hubspot", "mailchimp", "drift"):
        assert sandbox(key).call("GET", "/config")["retry_after"] is False


@pytest.mark.parametrize("key", ["google", "hubspot", "drift"])
def test_a_window_exceeded_is_a_429_without_retry_after(sandbox: Any, key: str) -> None:
    ctl = sandbox(key)
    ctl.call("POST", "/config/defaults", {"rate_limit": 2, "rate_window": 30.0})
    token = ctl.call("POST", "/tokens")["access_token"]
    answers = [raw(ctl, token) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    limited = answers[2]
    assert "Retry-After" not in limited.headers
    body = limited.json()
    if key == "google":
        assert body["error"]["status"] == "RESOURCE_EXHAUSTED"
        assert body["error"]["details"][0]["reason"] == "RATE_LIMIT_EXCEEDED"
    if key == "hubspot":
        assert body["errorType"] == "RATE_LIMIT"
        assert body["policyName"] == "TEN_SECONDLY_ROLLING"


def test_hubspot_search_has_its_own_per_second_limit(sandbox: Any) -> None:
    ctl = sandbox("hubspot")
    # HubSpot's 4 per second, over a window long enough that a slow machine
    # cannot let it pass between two requests
    ctl.configure(search_rate_window=60.0)
    token = ctl.call("POST", "/tokens")["access_token"]
    search = "/crm/v3/objects/contacts/search"
    codes = [raw(ctl, token, "POST", search, {"limit": 1}).status_code for _ in range(6)]
    assert codes[:4] == [200] * 4
    assert 429 in codes[4:]
    limited = raw(ctl, token, "POST", search, {"limit": 1})
    assert limited.json()["policyName"] == "SECONDLY"
    assert raw(ctl, token).status_code == 200  # the 10-second window is another bucket


def test_mailchimp_refuses_more_than_its_simultaneous_connections(sandbox: Any) -> None:
    ctl = sandbox("mailchimp")
    ctl.configure(latency=0.3, concurrency_limit=3)
    token = ctl.call("POST", "/tokens")["access_token"]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: raw(ctl, token), range(8)))
    limited = [a for a in answers if a.status_code == 429]
    assert limited
    assert len(answers) - len(limited) <= 3
    assert "Retry-After" not in limited[0].headers
    assert limited[0].json()["title"] == "Too Many Requests"


@pytest.mark.parametrize("key", ["google", "hubspot", "drift"])
def test_the_client_waits_out_a_bare_429_and_succeeds(
    sandbox: Any, make_connector: MakeConnector, settings: Any, key: str
) -> None:
    # another integration on the account uses most of the window: the
    # sandbox is stricter than the client's own pacing
    settings.DRIFTSYNC_RATE_LIMITS = {key: {"retry_first": 1.5, "retry_cap": 1.5}}
    connector = make_connector(key)
    ctl = sandbox(key)
    ctl.call("POST", "/config/defaults", {"rate_limit": 2, "rate_window": 1.5})
    http = http_client(connector)
    for _ in range(5):
        http.request(*READS[key][:2])
    assert ctl.stats().get("429", 0) >= 1


def test_mailchimp_client_backs_off_briefly_on_too_many_connections(
    sandbox: Any, make_connector: MakeConnector
) -> None:
    connector = make_connector("mailchimp")
    ctl = sandbox("mailchimp")
    ctl.configure(latency=0.2, concurrency_limit=2)
    http = http_client(connector)
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda _: http.request("GET", "/lists"), range(6)))
    assert ctl.stats().get("429", 0) >= 1


def test_the_mailchimp_client_holds_ten_connections_across_threads(
    sandbox: Any, make_connector: MakeConnector
) -> None:
    connector = make_connector("mailchimp")
    ctl = sandbox("mailchimp")
    ctl.configure(latency=0.2)  # the real limit: 10
    http = http_client(connector)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda _: http.request("GET", "/lists"), range(32)))
    assert ctl.stats().get("429", 0) == 0


def test_pacing_is_shared_by_two_connectors_of_one_account(
    sandbox: Any, make_connector: MakeConnector, settings: Any
) -> None:
    settings.DRIFTSYNC_RATE_LIMITS = {"hubspot": {"limit": 10, "window": 1.0}}
    first = make_connector("hubspot")
    second = make_connector("hubspot", fresh_sandbox=False)
    # the same account: both instances must share one budget
    http_client(second).account_key = http_client(first).account_key
    from connectors.pacing import AccountPacing

    for c in (first, second):
        http = http_client(c)
        assert http.limits is not None
        http.pacing = AccountPacing(http.limits, "shared-test-account")
    ctl = sandbox("hubspot")
    ctl.call("POST", "/config/defaults", {"rate_limit": 10, "rate_window": 1.0})
    barrier = threading.Barrier(2)

    def burst(connector: Any) -> None:
        barrier.wait()
        for _ in range(12):
            http_client(connector).request("GET", "/crm/v3/properties/contacts")

    threads = [threading.Thread(target=burst, args=(c,)) for c in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ctl.stats().get("429", 0) == 0


def test_hubspot_daily_limit_fails_at_once_with_a_clear_error(
    sandbox: Any, make_connector: MakeConnector
) -> None:
    connector = make_connector("hubspot")
    ctl = sandbox("hubspot")
    ctl.configure(daily_limit=1)
    http = http_client(connector)
    http.request("GET", "/crm/v3/properties/contacts")
    with pytest.raises(TransientError) as caught:
        http.request("GET", "/crm/v3/properties/contacts")
    assert "Rate limited by hubspot" in caught.value.message
    assert "daily" in caught.value.message


def test_a_run_that_keeps_hitting_limits_stops_with_a_clear_error(
    sandbox: Any, make_connector: MakeConnector, settings: Any
) -> None:
    settings.DRIFTSYNC_RATE_LIMITS = {"google": {"retry_first": 0.3, "max_wait": 1.0}}
    connector = make_connector("google")
    ctl = sandbox("google")
    ctl.call("POST", "/config/defaults", {"rate_limit": 1, "rate_window": 60.0})
    http = http_client(connector)
    http.max_wait = 0.5
    with pytest.raises(ConnectorError) as caught:  # noqa: PT012
        for _ in range(3):
            http.request("GET", "/contactGroups")
    assert caught.value.status == 429
    assert "Rate limited by google" in caught.value.message


class _Answer:
    def __init__(self, value: str | None) -> None:
        self.headers = {"Retry-After": value} if value is not None else {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past
        ("120", 120.0),
        ("-3", 0.0),
    ],
)
def test_retry_after_is_parsed_in_both_forms_and_garbage_is_absent(
    value: str | None, expected: float | None
) -> None:
    assert retry_after_seconds(_Answer(value)) == expected  # type: ignore[arg-type]


def test_a_future_http_date_retry_after_counts_down() -> None:
    import email.utils
    import time

    stamp = email.utils.formatdate(time.time() + 30, usegmt=True)
    seconds = retry_after_seconds(_Answer(stamp))  # type: ignore[arg-type]
    assert seconds is not None
    assert 25 <= seconds <= 31
