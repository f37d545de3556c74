"""Property: whatever people do on both sides, with 5xx, 429 and dropped
connections thrown in, deletions held by the mass-deletion guard and trash
tags the app refuses, the sync converges — mapped fields equal on both
sides, no duplicate emails, no lost edit, no writes once quiet (no echo), no
trash tag on a contact that was not deleted, and no lost trash tag: once the
limit is raised and the backoff has passed, every deletion's counterpart
carries it.

Runs derandomized in CI (the same examples every time, so a red build is
reproducible); set HYPOTHESIS_PROFILE=explore to search further.
"""

from __future__ import annotations

import os
from collections import defaultdict
from contextlib import ExitStack
from unittest import mock

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connections.engine.run import run_connection
from connections.engine.writer import LiveWriter
from connections.models import Account, Connection, ContactLink, SyncRun
from connectors import sandbox
from connectors.base import TransientError, WriteResult, normalize_email
from connectors.http import HttpClient

from .world import App, connect

settings.register_profile(
    "ci",
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "explore",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

EMAILS = [f"p{i}@example.com" for i in range(5)]
NAMES = ["Ann", "Bob", "Čeněk", "O'Neil", "Zoë", "Li"]
LASTS = ["Lee", "van der Berg", "de la Cruz", "Smith", "Ng"]
PHONES = ["+1 555 0100", "+44 20 7946 0000", "555 1234", None]
FIELDS = {
    "first": {"google": "given_name", "mailchimp": "FNAME", "person": "first_name"},
    "last": {"google": "family_name", "mailchimp": "LNAME", "person": "last_name"},
    "phone": {"google": "phone", "mailchimp": "PHONE", "person": "phone"},
}
SIDES = ("google", "mailchimp")
TRASH, UNSUB = "DriftSync Trash", "DriftSync Unsubscribes"

person_ops = st.one_of(
    st.tuples(
        st.just("create"),
        st.sampled_from(SIDES),
        st.sampled_from(EMAILS),
        st.sampled_from(NAMES),
        st.sampled_from(LASTS),
        st.sampled_from(PHONES),
    ),
    st.tuples(
        st.just("edit"),
        st.sampled_from(SIDES),
        st.sampled_from(EMAILS),
        st.sampled_from(sorted(FIELDS)),
        st.sampled_from(NAMES + LASTS + [p for p in PHONES if p]),
    ),
    st.tuples(
        st.just("edit"),
        st.sampled_from(SIDES),
        st.sampled_from(EMAILS),
        st.sampled_from(sorted(FIELDS)),
        st.sampled_from(NAMES + LASTS + [p for p in PHONES if p]),
    ),
    st.tuples(st.just("tag"), st.sampled_from(SIDES), st.sampled_from(EMAILS), st.just("Lead")),
    st.tuples(st.just("delete"), st.sampled_from(SIDES), st.sampled_from(EMAILS)),
    st.tuples(st.just("unsubscribe"), st.just("mailchimp"), st.sampled_from(EMAILS)),
)
faults = st.tuples(
    st.sampled_from([0.0, 0.15, 0.3]),
    st.sampled_from([503, 429, 500]),
    st.sampled_from([0.0, 0.05]),
    # the mass-deletion guard's limit this round (0: any two deletions are held)
    st.sampled_from([0.2, 0.0]),
    # the apps refuse every trash tag this round
    st.booleans(),
)
#: rounds of things people do, each followed by a sync run under some faults
rounds = st.lists(
    st.tuples(st.lists(person_ops, min_size=1, max_size=4), faults), min_size=2, max_size=5
)
#: who exists before the program starts, and where
SEED = {"google": EMAILS[:2], "mailchimp": EMAILS[2:4]}


@pytest.fixture(scope="module")
def server():
    srv = sandbox.serve(keys=SIDES)
    yield srv
    srv.stop()


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setattr(HttpClient, "_backoff", lambda self, attempt: 0.001)


class Model:
    """What a person did, and so what both sides must end up holding."""

    def __init__(self, apps: dict[str, App]) -> None:
        self.apps = apps
        self.ids: dict[str, dict[str, str]] = {side: {} for side in SIDES}
        self.expected: dict[str, dict[str, str | None]] = {}
        self.dead: set[str] = set()
        self.deleted_on: dict[str, str] = {}
        self.pending: dict[tuple[str, str], str] = {}
        self.unsubscribed: set[str] = set()

    def live(self, email: str) -> bool:
        return email in self.expected and email not in self.dead

    def apply(self, op: tuple) -> None:
        kind = op[0]
        if kind == "create":
            _, side, email, first, last, phone = op
            if email in self.expected:
                return
            app = self.apps[side]
            self.ids[side][email] = app.create(email, first, last, phone=phone)
            self.expected[email] = {"first": first, "last": last, "phone": phone}
            for f in FIELDS:
                self.pending[(email, f)] = side
        elif kind == "edit":
            _, side, email, field, value = op
            cid = self.ids[side].get(email)
            if not self.live(email) or cid is None:
                return
            if self.pending.get((email, field), side) != side:
                return  # the other side edited it since the last good sync
            self.apps[side].edit(cid, **{FIELDS[field]["person"]: value})
            self.expected[email][field] = value
            self.pending[(email, field)] = side
        elif kind == "tag":
            _, side, email, tag = op
            cid = self.ids[side].get(email)
            if self.live(email) and cid is not None:
                self.apps[side].tag(cid, tag)
        elif kind == "delete":
            _, side, email = op
            cid = self.ids[side].get(email)
            other = SIDES[1 - SIDES.index(side)]
            if self.live(email) and cid is not None and email in self.ids[other]:
                self.apps[side].delete(cid)
                self.dead.add(email)
                self.deleted_on[email] = side
                del self.ids[side][email]
        elif kind == "unsubscribe":
            cid = self.ids["mailchimp"].get(op[2])
            if self.live(op[2]) and cid is not None:
                self.apps["mailchimp"].unsubscribe(cid)
                self.unsubscribed.add(op[2])

    def learn_ids(self) -> None:
        """Contacts the sync created get their ids from the apps."""
        for side in SIDES:
            for contact in self.apps[side].contacts():
                self.ids[side].setdefault(normalize_email(contact.email), contact.id)


def run(conn: Connection) -> SyncRun:
    conn.refresh_from_db()
    return run_connection(conn)


def refusing_trash_tags(writer, connector, writes):
    """The app answers 503 to every trash tag (other writes go through)."""
    tags = [w for w in writes if TRASH in w.add_tags]
    rest = [w for w in writes if TRASH not in w.add_tags]
    results = connector.write_contacts(rest) if rest else []
    refused = TransientError("Service Unavailable", status=503)
    return results + [WriteResult(w.ref, error=refused) for w in tags]


def faulty_round(guard: float, refuse_tags: bool) -> ExitStack:
    stack = ExitStack()
    stack.enter_context(override_settings(DRIFTSYNC_MAX_TRASH_SHARE=guard))
    if refuse_tags:
        stack.enter_context(mock.patch.object(LiveWriter, "write_contacts", refusing_trash_tags))
    return stack


def set_faults(apps: dict[str, App], error_rate: float, status: int, drop: float) -> None:
    for app in apps.values():
        app.ctl(
            "POST", "/config", {"error_rate": error_rate, "error_status": status, "drop_rate": drop}
        )


@pytest.mark.slow
@pytest.mark.django_db
@settings(settings.get_profile(PROFILE))
@given(program=rounds)
def test_both_sides_converge_whatever_people_do(server, fast_retries, program):
    Connection.objects.all().delete()
    Account.objects.all().delete()
    apps = {key: App(server, key) for key in SIDES}
    for app in apps.values():
        app.reset()
        app.make_account()
    conn = connect(apps["google"], apps["mailchimp"], sync_deletions=True, sync_unsubscribes=True)
    model = Model(apps)
    for side, emails in SEED.items():
        for i, email in enumerate(emails):
            model.apply(("create", side, email, NAMES[i], LASTS[i], PHONES[i]))
    assert run(conn).status == SyncRun.Status.SUCCEEDED
    model.pending.clear()
    model.learn_ids()

    for actions, (error_rate, status, drop, guard, refuse_tags) in program:
        for op in actions:
            model.apply(op)
        set_faults(apps, error_rate, status, drop)
        with faulty_round(guard, refuse_tags):
            result = run(conn)
        set_faults(apps, 0.0, 503, 0.0)
        if result.status != SyncRun.Status.FAILED and not result.total("failed"):
            model.pending.clear()
        model.learn_ids()

    # quiet down: no faults; the person raised the guard's limit, and the
    # backoff of refused tags has passed; run until a run writes nothing
    for _ in range(4):
        ContactLink.objects.exclude(trash_pending="").update(trash_retry_after=None)
        with override_settings(DRIFTSYNC_MAX_TRASH_SHARE=1.0):
            result = run(conn)
        assert result.status != SyncRun.Status.FAILED, result.error
        if result.total("created") + result.total("updated") + result.total("tagged") == 0:
            break
    with override_settings(DRIFTSYNC_MAX_TRASH_SHARE=1.0):
        quiet = run(conn)
    writes = sum(quiet.total(k) for k in ("created", "updated", "tagged", "trashed"))
    assert writes == 0, f"a quiet run still wrote: {quiet.counters}"

    contacts = {side: apps[side].contacts() for side in SIDES}
    by_email = {side: defaultdict(list) for side in SIDES}
    for side in SIDES:
        for c in contacts[side]:
            by_email[side][normalize_email(c.email)].append(c)
        dups = {e: len(cs) for e, cs in by_email[side].items() if len(cs) > 1}
        assert not dups, f"duplicate emails in {side}: {dups}"
    for email, want in model.expected.items():
        if email in model.dead:
            continue
        for side in SIDES:
            found = by_email[side].get(email)
            assert found, f"{email} missing in {side}"
            got = found[0]
            for field, value in want.items():
                assert got.fields.get(FIELDS[field][side]) == value, (
                    f"{side} {email} {field}: {got.fields.get(FIELDS[field][side])!r} != {value!r}"
                )
    for side in SIDES:
        for email, found in by_email[side].items():
            if TRASH in found[0].tags:
                assert email in model.dead, f"{email} trashed in {side} but never deleted"
    # no lost trash tag: every deletion's counterpart carries it
    pending = ContactLink.objects.filter(connection=conn).exclude(trash_pending="")
    assert not pending.exists(), [(x.email, x.trash_reason) for x in pending]
    for email, side in model.deleted_on.items():
        other = SIDES[1 - SIDES.index(side)]
        for c in by_email[other].get(email, []):
            assert TRASH in c.tags, f"{email} deleted in {side}; its {other} contact has no tag"
    for email in model.unsubscribed - model.dead:
        assert UNSUB in by_email["google"][email][0].tags
