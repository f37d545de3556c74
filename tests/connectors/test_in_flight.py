"""Requests in flight: a connector sends independent requests together, and
every client of one account together stays within the app's concurrency
(Mailchimp: 10 simultaneous connections per user), counted at the sandbox."""

from __future__ import annotations

import threading
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
