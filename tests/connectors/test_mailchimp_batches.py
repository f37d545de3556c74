"""Mailchimp updates of existing members through batch operations (``POST /batches``),
against the sandbox over real HTTP on loopback (issue 13)."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from connectors.base import ContactRejected, ContactWrite, Credentials, TransientError
from connectors.mailchimp.client import subscriber_hash
from connectors.mailchimp.connector import MailchimpConnector
from connectors.sandbox import api_base_url, serve
from connectors.sandbox.base import SandboxServer
from connectors.sandbox.control import SandboxControl
from connectors.sandbox.mailchimp import DEFAULT_LIST_ID
from tests.sandbox_limits import realistic

KEY = "mailchimp-batch-key"
PATCH = "PATCH /3.0/lists/{list_id}/members/{hash}"
BATCHES = "POST /3.0/batches"


class Control(SandboxControl):
    def __init__(self, server: SandboxServer) -> None:
        super().__init__(server.url("mailchimp"), key="mailchimp", timeout=30)
        self.base_url = api_base_url(server, "mailchimp")


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    srv = serve(keys=("mailchimp",), tokens=(KEY,))
    yield srv
    srv.stop()


@pytest.fixture
def sandbox(server: SandboxServer) -> Control:
    control = Control(server)
    control.call("POST", "/reset")
    realistic(control, "mailchimp")
    control.configure(batch_delay=0.3)  # asynchronous, but short for tests
    return control


@pytest.fixture
def make(sandbox: Control) -> Callable[[], MailchimpConnector]:
    def build() -> MailchimpConnector:
        connector = MailchimpConnector(
            Credentials(api_key=KEY), {"audience": DEFAULT_LIST_ID}, base_url=sandbox.base_url
        )
        connector.batch_poll_first = 0.05  # type: ignore[misc]
        connector.client.http.backoff_base = 0.01
        return connector

    return build


def seed(sandbox: Control, n: int) -> list[str]:
    people = [
        {"email": f"m{i}@example.com", "first_name": f"F{i}", "last_name": "Old"} for i in range(n)
    ]
    return sandbox.bulk(people)


def renames(ids: list[str], last: str = "New") -> list[ContactWrite]:
    return [
        ContactWrite(cid, f"m{i}@example.com", {"LNAME": last}, ref=i) for i, cid in enumerate(ids)
    ]


def test_many_updates_go_as_one_batch_that_never_touches_the_status(
    make: Callable[[], MailchimpConnector], sandbox: Control
) -> None:
    ids = seed(sandbox, 60)
    sandbox.unsubscribe(ids[3])
    connector = make()
    sent: list[list[dict[str, Any]]] = []
    start = connector.client.start_batch
    connector.client.start_batch = lambda ops: sent.append(ops) or start(ops)  # type: ignore[method-assign]
    sandbox.reset_stats()
    results = connector.write_contacts(renames(ids))
    assert [r.error for r in results] == [None] * 60
    assert {r.contact.fields["LNAME"] for r in results if r.contact} == {"New"}
    stats = sandbox.stats()
    assert stats.get(BATCHES) == 1
    assert PATCH not in stats
    # every operation is the same partial update as the PATCH, without a status
    (ops,) = sent
    assert {op["method"] for op in ops} == {"PATCH"}
    assert all(set(json.loads(op["body"])) == {"merge_fields"} for op in ops)
    members = {m["id"]: m for m in sandbox.contacts()}
    assert {members[i]["merge_fields"]["LNAME"] for i in ids} == {"New"}
    assert members[ids[3]]["status"] == "unsubscribed"


def test_a_member_the_batch_refuses_fails_alone(
    make: Callable[[], MailchimpConnector], sandbox: Control
) -> None:
    ids = seed(sandbox, 55)
    writes = renames(ids)
    writes[7].fields["email_address"] = "not-an-email"
    results = make().write_contacts(writes)
    failed = {r.ref: r.error for r in results if r.error}
    assert list(failed) == [7]
    assert isinstance(failed[7], ContactRejected)
    assert "looks fake or invalid" in str(failed[7])
    members = {m["id"]: m for m in sandbox.contacts()}
    assert members[ids[7]]["merge_fields"]["LNAME"] == "Old"
    assert members[ids[8]]["merge_fields"]["LNAME"] == "New"
    assert sandbox.stats().get(BATCHES) == 1


def test_few_updates_stay_patches_in_flight(
    make: Callable[[], MailchimpConnector], sandbox: Control
) -> None:
    ids = seed(sandbox, 5)
    sandbox.reset_stats()
    results = make().write_contacts(renames(ids))
    assert all(r.ok for r in results)
    stats = sandbox.stats()
    assert stats.get(PATCH) == 5
    assert BATCHES not in stats


def test_a_batch_that_never_finishes_fails_its_contacts_with_a_clear_reason(
    make: Callable[[], MailchimpConnector], sandbox: Control
) -> None:
    ids = seed(sandbox, 50)
    sandbox.configure(batch_delay=3600)
    connector = make()
    connector.batch_max_wait = 0.2  # type: ignore[misc]
    results = connector.write_contacts(renames(ids))
    assert all(isinstance(r.error, TransientError) for r in results)
    assert "did not finish" in str(results[0].error)
    # the batch was stopped: nothing it held was applied
    assert sandbox.stats().get("DELETE /3.0/batches/{batch_id}") == 1
    assert {m["merge_fields"]["LNAME"] for m in sandbox.contacts()} == {"Old"}


def test_the_sandbox_runs_batches_in_the_background_with_a_results_archive(
    sandbox: Control,
) -> None:
    ids = seed(sandbox, 2)
    sandbox.configure(batch_delay=3600)
    auth = {"Authorization": f"Bearer {KEY}"}
    ops = [
        {
            "method": "PATCH",
            "path": f"/lists/{DEFAULT_LIST_ID}/members/{ids[0]}",
            "body": json.dumps({"merge_fields": {"LNAME": "Batched"}}),
            "operation_id": "ok",
        },
        {
            "method": "PATCH",
            "path": f"/lists/{DEFAULT_LIST_ID}/members/{ids[1]}",
            "body": json.dumps({"email_address": "nope"}),
            "operation_id": "bad",
        },
        {
            "method": "GET",
            "path": f"/lists/{DEFAULT_LIST_ID}/members/{subscriber_hash('x@example.com')}",
            "operation_id": "missing",
        },
    ]
    url = sandbox.base_url
    batch = requests.post(f"{url}/batches", json={"operations": ops}, headers=auth, timeout=10)
    assert batch.status_code == 200
    body = batch.json()
    assert body["status"] == "pending"
    assert body["total_operations"] == 3
    assert body["response_body_url"] == ""
    # not applied until it finishes
    status = requests.get(f"{url}/batches/{body['id']}", headers=auth, timeout=10).json()
    assert status["status"] != "finished"
    assert {m["merge_fields"]["LNAME"] for m in sandbox.contacts()} == {"Old"}
    # the body is a JSON string, as Mailchimp documents; an object is refused
    refused = requests.post(
        f"{url}/batches",
        json={"operations": [{**ops[0], "body": {"merge_fields": {}}}]},
        headers=auth,
        timeout=10,
    )
    assert refused.status_code == 400

    sandbox.configure(batch_delay=0)
    batch = requests.post(f"{url}/batches", json={"operations": ops}, headers=auth, timeout=10)
    status = requests.get(f"{url}/batches/{batch.json()['id']}", headers=auth, timeout=10).json()
    assert status["status"] == "finished"
    assert (status["finished_operations"], status["errored_operations"]) == (3, 2)
    archive = requests.get(status["response_body_url"], timeout=10)  # no API key needed
    assert archive.status_code == 200
    rows = []
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member)
            if handle is not None:
                rows.extend(json.load(handle))
    by_id = {r["operation_id"]: r for r in rows}
    assert by_id["ok"]["status_code"] == 200
    assert json.loads(by_id["ok"]["response"])["merge_fields"]["LNAME"] == "Batched"
    assert by_id["bad"]["status_code"] == 400
    assert "looks fake or invalid" in json.loads(by_id["bad"]["response"])["detail"]
    assert by_id["missing"]["status_code"] == 404
