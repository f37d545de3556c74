"""A Drift ``contact_identified`` delivery carries the whole contact: while it
is fresh the run uses it instead of reading the contact from Drift again (at
a busy inbox, Drift's pace would otherwise bound how fast visitors reach the
other app). A delivery that only names the contact, or an old one, is read."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from connections.engine import read
from connections.models import WebhookEvent
from connectors import sandbox

from .world import App, connect, full_name, sync

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server():
    srv = sandbox.serve(keys=("drift", "hubspot"))
    yield srv
    srv.stop()


@pytest.fixture
def apps(server, db):
    out = {key: App(server, key) for key in ("drift", "hubspot")}
    for app in out.values():
        app.reset()
        app.make_account()
    return out


def delivered(drift: App, name: str) -> str:
    """A visitor identified; the delivery stored as the webhook view stores it."""
    email = f"{name.lower()}@example.com"
    cid = str(drift.ctl("POST", "/identify", {"email": email, "name": name})["id"])
    record = drift.ctl("GET", f"/contacts/{cid}")
    body = {"type": "contact_identified", "token": "***", "orgId": 1, "data": record}
    WebhookEvent.objects.create(
        source="drift",
        account=drift.account,
        event_type="contact_identified",
        kind="identified",
        contact_id=cid,
        email=email,
        body=json.dumps(body),
    )
    return cid


def drift_reads(drift: App) -> int:
    return drift.stats().get("GET /contacts/{id}", 0)


def test_fresh_identified_deliveries_are_synced_without_reading_drift_again(apps):
    drift, hubspot = apps["drift"], apps["hubspot"]
    conn = connect(drift, hubspot)
    for name in ("Ann", "Bob", "Cat"):
        delivered(drift, name)
    before = drift_reads(drift)
    sync(conn)
    assert drift_reads(drift) == before
    assert sorted(full_name(hubspot, c) for c in hubspot.contacts()) == ["Ann", "Bob", "Cat"]


def test_an_old_delivery_is_read_again_so_a_later_change_is_not_missed(apps):
    drift, hubspot = apps["drift"], apps["hubspot"]
    conn = connect(drift, hubspot)
    cid = delivered(drift, "Dee")
    drift.ctl("PATCH", f"/contacts/{cid}", {"name": "Dee Renamed"})  # no webhook reached us
    WebhookEvent.objects.update(
        received_at=dt.datetime.now(dt.UTC) - read.INBOX_RECORD_FRESH - dt.timedelta(seconds=5)
    )
    sync(conn)
    assert full_name(hubspot, hubspot.one("dee@example.com")) == "Dee Renamed"


def test_a_contact_updated_delivery_means_the_contact_is_read(apps):
    drift, hubspot = apps["drift"], apps["hubspot"]
    conn = connect(drift, hubspot)
    cid = delivered(drift, "Eve")
    drift.ctl("PATCH", f"/contacts/{cid}", {"name": "Eve Renamed"})
    WebhookEvent.objects.create(
        source="drift",
        account=drift.account,
        event_type="contact_updated",
        kind="updated",
        contact_id=cid,
        body="{}",
    )
    sync(conn)
    assert full_name(hubspot, hubspot.one("eve@example.com")) == "Eve Renamed"
