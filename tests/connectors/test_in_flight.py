"""Requests in flight: a connector sends independent requests together, and
every client of one account together stays within the app's concurrency
(Mailchimp: 10 simultaneous connections per user), counted at the sandbox."""

from __future__ import annotations

import threading
import time
import uuid

from connectors import registry
from connectors.base import ContactWrite, Credentials
from connectors.sandbox import SandboxServer, api_base_url, facts
from connectors.sandbox.control import DEFAULT_CONFIG, SandboxControl


def test_two_connections_on_one_mailchimp_account_share_its_ten_connections(
    sandbox_server: SandboxServer,
):
    control = SandboxControl.of(sandbox_server, "mailchimp")
    control.reset(config=True)
    # every request takes a while, so requests of both clients overlap
    control.configure(latency=0.03, concurrency_limit=10)
    try:
        ids = control.bulk(
            [{"email": f"m{i}@example.com", "first_name": f"M{i}"} for i in range(60)]
        )
        token = control.new_token()["access_token"]
        account_key = f"account-inflight-{uuid.uuid4().hex}"  # one account, two connections
        connectors = [
            registry.get("mailchimp")(
                Credentials(access_token=token),
                dict(facts("mailchimp").settings),
                base_url=api_base_url(sandbox_server, "mailchimp"),
                account_key=account_key,
            )
            for _ in range(2)
        ]
        members = {c.id: c for c in connectors[0].get_contacts(ids).values()}
        assert len(members) == 60
        control.call("POST", "/in-flight/reset")
        results: list[list] = [[], []]

        def write(n: int) -> None:
            mine = ids[n * 30 : (n + 1) * 30]
            results[n] = connectors[n].write_contacts(
                [
                    ContactWrite(
                        cid,
                        members[cid].email,
                        {"LNAME": f"Changed{n}"},
                        current=members[cid],
                        ref=cid,
                    )
                    for cid in mine
                ]
            )

        threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(r.ok for side in results for r in side)
        assert sum(map(len, results)) == 60
        peak = control.call("GET", "/in-flight")["peak"]
        # together within Mailchimp's 10, and more than one request per client at once
        assert 2 < peak <= 10
        assert control.stats().get("429", 0) == 0
        assert control.native(ids[0])["merge_fields"]["LNAME"] == "Changed0"
    finally:
        control.configure(**DEFAULT_CONFIG)


def _two_connectors(sandbox_server: SandboxServer, key: str, control: SandboxControl) -> list:
    token = control.new_token()["access_token"]
    account_key = f"account-inflight-{uuid.uuid4().hex}"  # one account, two connections
    return [
        registry.get(key)(
            Credentials(access_token=token),
            dict(facts(key).settings),
            base_url=api_base_url(sandbox_server, key),
            account_key=account_key,
        )
        for _ in range(2)
    ]


def _together(work) -> list:
    results: list = [None, None]

    def run(n: int) -> None:
        results[n] = work(n)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_two_connections_on_one_hubspot_account_keep_within_five_requests_in_flight(
    sandbox_server: SandboxServer,
):
    control = SandboxControl.of(sandbox_server, "hubspot")
    control.reset(config=True)
    control.configure(latency=0.03)
    try:
        people = [{"email": f"h{i}@example.com", "first_name": f"H{i}"} for i in range(120)]
        ids = control.bulk(people)
        connectors = _two_connectors(sandbox_server, "hubspot", control)
        for c in connectors:
            c.read_batch_size = 10  # six chunks each: independent reads
            c.write_batch_size = 10
        halves = [ids[:60], ids[60:]]
        control.call("POST", "/in-flight/reset")
        found = _together(lambda n: connectors[n].get_contacts(halves[n]))
        assert sorted(found[0]) + sorted(found[1]) == sorted(ids[:60]) + sorted(ids[60:])
        peak = control.call("GET", "/in-flight")["peak"]
        # together within the 5 chosen for HubSpot, and more than one request at once
        assert 2 < peak <= 5

        control.call("POST", "/in-flight/reset")
        written = _together(
            lambda n: (
                connectors[n].write_contacts(
                    [
                        ContactWrite(cid, None, {"lastname": f"Changed{n}"}, ref=cid)
                        for cid in halves[n]
                    ]
                )
                + connectors[n].write_contacts(
                    [ContactWrite(None, f"new{n}-{i}@example.com", {}, ref=i) for i in range(30)]
                )
            )
        )
        assert all(r.ok for side in written for r in side)
        assert 1 < control.call("GET", "/in-flight")["peak"] <= 5
        assert control.stats().get("429", 0) == 0
        assert control.native(ids[0])["properties"]["lastname"] == "Changed0"
    finally:
        control.configure(**DEFAULT_CONFIG)


def test_google_reads_go_together_and_its_writes_one_at_a_time_per_account(
    sandbox_server: SandboxServer,
):
    control = SandboxControl.of(sandbox_server, "google")
    control.reset(config=True)
    control.configure(latency=0.03)
    try:
        people = [{"email": f"g{i}@example.com", "first_name": f"G{i}"} for i in range(80)]
        ids = control.bulk(people)
        connectors = _two_connectors(sandbox_server, "google", control)
        for c in connectors:
            c.get_batch_size = 10
            c.write_batch_size = 10
        halves = [ids[:40], ids[40:]]
        control.call("POST", "/in-flight/reset")
        found = _together(lambda n: connectors[n].get_contacts(halves[n]))
        assert len(found[0]) + len(found[1]) == 80
        assert 1 < control.call("GET", "/in-flight")["peak"] <= 4

        # "Mutate requests for the same user should be sent sequentially" (People API);
        # the emails were just looked up (as the engine does), so only writes are sent
        for n, c in enumerate(connectors):
            c._looked_up.update({f"new{n}-{i}@example.com": time.monotonic() for i in range(30)})
        control.call("POST", "/in-flight/reset")
        written = _together(
            lambda n: connectors[n].write_contacts(
                [
                    ContactWrite(None, f"new{n}-{i}@example.com", {"given_name": "N"}, ref=i)
                    for i in range(30)
                ]
            )
        )
        assert all(r.ok for side in written for r in side)
        assert control.call("GET", "/in-flight")["peak"] == 1
        assert control.stats().get("429", 0) == 0
    finally:
        control.configure(**DEFAULT_CONFIG)


def test_a_helper_threads_database_connections_are_closed_when_its_work_is_done(
    monkeypatch,
):
    """The shared pacing store and token refreshes use the database from the
    threads requests go out in: those connections do not outlive the work."""
    from django.db import connections

    from connectors import http

    assert connections.close_all in http.THREAD_DONE  # registered at start-up
    closed: list[str] = []
    monkeypatch.setattr(
        http, "THREAD_DONE", [lambda: closed.append(threading.current_thread().name)]
    )
    workers: list[str] = []

    def work(item: int) -> int:
        time.sleep(0.01)
        workers.append(threading.current_thread().name)
        return item * 2

    assert http.in_flight_map(work, range(4), None) == [0, 2, 4, 6]
    assert sorted(closed) == sorted(workers)
    assert threading.current_thread().name not in closed
