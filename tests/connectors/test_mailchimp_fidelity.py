"""Mailchimp unknowns, settled (docs/api-fidelity.md): date merge
fields round-trip as YYYY-MM-DD whatever the audience's display format; a
tag change does not move ``last_changed``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import requests

from connectors.base import ContactWrite
from connectors.sandbox.control import SandboxControl as Control
from connectors.sandbox.mailchimp import DEFAULT_LIST_ID, member_hash

from .conftest import MakeConnector


@pytest.fixture
def mailchimp(control: Callable[[str], Control]) -> Control:
    ctl = control("mailchimp")
    ctl.call("POST", "/reset")
    return ctl


def _date_field(ctl: Control, date_format: str) -> None:
    token = ctl.call("POST", "/tokens")["access_token"]
    answer = requests.post(
        f"{ctl.base_url}/lists/{DEFAULT_LIST_ID}/merge-fields",
        json={
            "tag": "RENEWAL",
            "name": "Renewal",
            "type": "date",
            "options": {"date_format": date_format},
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("date_format", ["DD/MM/YYYY", "MM/DD/YYYY"])
def test_a_date_is_written_and_read_back_unchanged_whatever_the_display_format(
    mailchimp: Control, make_connector: MakeConnector, date_format: str
) -> None:
    _date_field(mailchimp, date_format)
    connector = make_connector("mailchimp", fresh_sandbox=False)
    [created] = connector.write_contacts(
        [ContactWrite(None, "dated@example.com", {"RENEWAL": "2025-03-04"})]
    )
    assert created.ok, created.error
    stored = mailchimp.call("GET", f"/contacts/{created.contact.id}")
    assert stored["merge_fields"]["RENEWAL"] == "2025-03-04"  # not 3 April
    fresh = connector.get_contacts([created.contact.id])[created.contact.id]
    assert fresh.fields["RENEWAL"] == "2025-03-04"


def test_the_sandbox_reads_slashed_dates_month_first(mailchimp: Control) -> None:
    _date_field(mailchimp, "DD/MM/YYYY")
    token = mailchimp.call("POST", "/tokens")["access_token"]
    answer = requests.put(
        f"{mailchimp.base_url}/lists/{DEFAULT_LIST_ID}/members/{member_hash('slashed@example.com')}",
        json={
            "email_address": "slashed@example.com",
            "status_if_new": "subscribed",
            "merge_fields": {"RENEWAL": "04/03/2025"},
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.json()["merge_fields"]["RENEWAL"] == "2025-04-03"


def test_a_tag_change_does_not_move_last_changed(mailchimp: Control) -> None:
    created = mailchimp.call("POST", "/contacts", {"email": "t@example.com"})
    member: dict[str, Any] = mailchimp.call("GET", f"/contacts/{created['id']}")
    before = member["last_changed"]
    after = mailchimp.call("POST", f"/contacts/{member['id']}/tags", {"add": ["vip"]})
    assert [t["name"] for t in after["tags"]] == ["vip"]
    assert after["last_changed"] == before


def test_a_tag_edited_in_mailchimp_reaches_the_sync_at_the_next_tag_rescan(
    mailchimp: Control, make_connector: MakeConnector
) -> None:
    connector = make_connector("mailchimp", fresh_sandbox=False)
    created = mailchimp.call("POST", "/contacts", {"email": "tagme@example.com"})
    cursor = None
    for page in connector.changes(None):
        cursor = page.cursor
    mailchimp.call("POST", f"/contacts/{created['id']}/tags", {"add": ["vip"]})
    # an ordinary incremental read cannot see it: last_changed did not move
    quiet = [c for page in connector.changes(cursor) for c in page.contacts]
    assert quiet == []
    type(connector).tag_rescan_seconds, saved = 0.0, type(connector).tag_rescan_seconds
    try:
        seen = [c for page in connector.changes(cursor) for c in page.contacts]
    finally:
        type(connector).tag_rescan_seconds = saved
    [tagged] = [c for c in seen if c.email == "tagme@example.com"]
    assert "vip" in tagged.tags


def test_the_schema_cached_on_the_account_stands_in_for_the_merge_fields_read(
    mailchimp: Control, make_connector: MakeConnector
) -> None:
    from connections.models import Account

    _date_field(mailchimp, "DD/MM/YYYY")
    first = make_connector("mailchimp", fresh_sandbox=False)
    cached = Account(schema=Account.dump_schema(first.fields())).schema_fields()
    [created] = first.write_contacts(
        [ContactWrite(None, "dated@example.com", {"RENEWAL": "2025-03-04"})]
    )
    mailchimp.call("POST", "/stats/reset")
    later = make_connector("mailchimp", fresh_sandbox=False)
    later.use_schema(cached)
    [updated] = later.write_contacts(
        [ContactWrite(created.contact.id, None, {"RENEWAL": "2026-12-31"}, current=created.contact)]
    )
    assert updated.ok, updated.error
    assert later.get_contacts([created.contact.id])[created.contact.id].fields["RENEWAL"] == (
        "2026-12-31"
    )
    assert "GET /3.0/lists/{list_id}/merge-fields" not in mailchimp.call("GET", "/stats")
    # a schema cached before the merge fields' own types were kept is read again
    old = [dataclasses.replace(f, native_type="", native_format="") for f in cached]
    again = make_connector("mailchimp", fresh_sandbox=False)
    again.use_schema(old)
    again.get_contacts([created.contact.id])
    assert mailchimp.call("GET", "/stats")["GET /3.0/lists/{list_id}/merge-fields"] == 1
