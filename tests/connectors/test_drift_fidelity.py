"""Drift as it behaves today, pinned against the sandbox's realistic defaults.

Sources (also in docs/api-fidelity.md):
- https://devdocs.drift.com/docs/contact-model: contact tags were replaced by
  attributes, "you will no longer be able to apply those tags to a contact's
  profile"; custom attributes are "a key and a non-null value".
- https://devdocs.drift.com/docs/contact-errors: CONTACT-9 (400) "a provided
  tag name didn't map to a known tag id"; CONTACT-11 (400) generic bad request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from connectors.base import ConfigError, ContactWrite, Credentials
from connectors.drift.connector import DriftConnector
from connectors.sandbox import serve
from connectors.sandbox.base import SandboxServer
from connectors.sandbox.control import SandboxControl
from tests.sandbox_limits import realistic


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    srv = serve(keys=("drift",))
    yield srv
    srv.stop()


@pytest.fixture
def sandbox(server: SandboxServer) -> SandboxControl:
    control = SandboxControl.of(server, "drift", timeout=10)
    control.call("POST", "/reset")
    realistic(control, "drift")
    return control


@pytest.fixture
def make(sandbox: SandboxControl) -> Callable[..., DriftConnector]:
    def build(settings: dict[str, Any] | None = None) -> DriftConnector:
        issued = sandbox.call("POST", "/tokens")
        credentials = Credentials(
            access_token=issued["access_token"],
            refresh_token=issued["refresh_token"],
            expires_at=time.time() + issued["expires_in"],
        )
        connector = DriftConnector(credentials, settings, base_url=sandbox.base_url)
        connector.http.backoff_base = 0.01
        return connector

    return build


def _raw(sandbox: SandboxControl, method: str, path: str, body: Any) -> requests.Response:
    token = sandbox.call("POST", "/tokens")["access_token"]
    return requests.request(
        method,
        f"{sandbox.base_url}{path}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


# -- the sandbox behaves as Drift documents ------------------------------------


def test_sandbox_refuses_a_tag_name_the_org_does_not_know_with_contact_9(
    sandbox: SandboxControl,
) -> None:
    cid = sandbox.call("POST", "/contacts", {"email": "t@example.com"})["id"]
    response = _raw(sandbox, "POST", f"/contacts/{cid}/tags", [{"name": "VIP"}])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "CONTACT-9"
    sandbox.call("POST", "/tags", {"names": ["VIP"]})
    assert _raw(sandbox, "POST", f"/contacts/{cid}/tags", [{"name": "VIP"}]).ok


def test_sandbox_refuses_null_attribute_values(sandbox: SandboxControl) -> None:
    cid = sandbox.call("POST", "/contacts", {"email": "n@example.com", "phone": "1"})["id"]
    response = _raw(sandbox, "PATCH", f"/contacts/{cid}", {"attributes": {"phone": None}})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "CONTACT-11"
    assert _raw(sandbox, "PATCH", f"/contacts/{cid}", {"attributes": {"phone": ""}}).ok


# -- the connector: tags live in an attribute by default ---------------------


def test_tags_live_in_the_driftsync_tags_attribute_by_default(
    make: Callable[..., DriftConnector], sandbox: SandboxControl
) -> None:
    drift = make()
    [made] = drift.write_contacts(
        [ContactWrite(None, "tagged@example.com", {}, add_tags=frozenset({"VIP", "Chat"}))]
    )
    assert made.ok, made.error
    assert made.contact is not None
    assert made.contact.tags == {"VIP", "Chat"}
    native = sandbox.native(made.contact.id)["attributes"]
    assert native["driftsync_tags"] == "Chat, VIP"
    assert native["tags"] == []
    [removed] = drift.write_contacts(
        [
            ContactWrite(
                made.contact.id,
                None,
                {},
                remove_tags=frozenset({"VIP", "Chat"}),
                current=made.contact,
            )
        ]
    )
    assert removed.ok, removed.error
    assert removed.contact is not None
    assert removed.contact.tags == frozenset()
    assert sandbox.native(made.contact.id)["attributes"]["driftsync_tags"] == ""


def test_a_person_tagging_in_drift_is_read_from_the_attribute(
    make: Callable[..., DriftConnector], sandbox: SandboxControl
) -> None:
    cid = sandbox.call("POST", "/contacts", {"email": "p@example.com", "tags": ["lead"]})["id"]
    assert make().get_contacts([cid])[cid].tags == {"lead"}


def test_a_tag_with_a_comma_is_refused_for_that_contact_only(
    make: Callable[..., DriftConnector],
) -> None:
    [result] = make().write_contacts(
        [ContactWrite(None, "c@example.com", {}, add_tags=frozenset({"a, b"}))]
    )
    assert not result.ok
    assert "a, b" in str(result.error)


def test_a_legacy_tag_drift_refuses_is_a_connection_error_naming_the_tag(
    make: Callable[..., DriftConnector], sandbox: SandboxControl
) -> None:
    from connectors.drift.connector import LEGACY_TAGS

    drift = make({"tags_attribute": LEGACY_TAGS})
    cid = sandbox.call("POST", "/contacts", {"email": "legacy@example.com"})["id"]
    with pytest.raises(ConfigError) as caught:
        drift.write_contacts([ContactWrite(cid, None, {}, add_tags=frozenset({"DriftSync Trash"}))])
    text = str(caught.value)
    assert "DriftSync Trash" in text
    assert "CONTACT-9" in text
    assert "attribute" in text  # says what to do


def test_legacy_tags_work_where_the_org_still_has_them(
    make: Callable[..., DriftConnector], sandbox: SandboxControl
) -> None:
    from connectors.drift.connector import LEGACY_TAGS

    sandbox.call("POST", "/org", {"legacy_tags": True})
    sandbox.call("POST", "/tags", {"names": ["VIP"]})
    drift = make({"tags_attribute": LEGACY_TAGS})
    cid = sandbox.call("POST", "/contacts", {"email": "old@example.com"})["id"]
    [result] = drift.write_contacts([ContactWrite(cid, None, {}, add_tags=frozenset({"VIP"}))])
    assert result.ok, result.error
    assert [t["name"] for t in sandbox.native(cid)["attributes"]["tags"]] == ["VIP"]


# -- clearing a value never sends null ----------------------------------------


def test_clearing_a_value_sends_an_empty_string_not_null(
    make: Callable[..., DriftConnector], sandbox: SandboxControl
) -> None:
    drift = make()
    cid = sandbox.call(
        "POST", "/contacts", {"email": "clear@example.com", "phone": "+1 555", "title": "CTO"}
    )["id"]
    current = drift.get_contacts([cid])[cid]
    [result] = drift.write_contacts(
        [ContactWrite(cid, None, {"phone": None, "title": None}, current=current)]
    )
    assert result.ok, result.error
    attributes = sandbox.native(cid)["attributes"]
    assert attributes["phone"] == ""
    assert attributes["title"] == ""
    again = drift.get_contacts([cid])[cid]
    assert again.fields.get("phone") is None
    assert again.fields.get("title") is None


# -- CQL source -----------------------------------------------------------------


def test_cql_source_is_a_field_kept_in_a_custom_attribute(
    make: Callable[..., DriftConnector], sandbox: SandboxControl
) -> None:
    drift = make()
    fields = {f.key: f for f in drift.fields()}
    assert "cql_source" in fields
    assert not fields["cql_source"].read_only
    [made] = drift.write_contacts(
        [ContactWrite(None, "cql@example.com", {"cql_source": "HubSpot form"})]
    )
    assert made.ok, made.error
    assert made.contact is not None
    assert sandbox.native(made.contact.id)["attributes"]["cql_source"] == "HubSpot form"


def test_an_org_attribute_labelled_lead_source_is_used_for_cql_source(
    make: Callable[..., DriftConnector], sandbox: SandboxControl
) -> None:
    sandbox.call("POST", "/attributes", {"name": "lead_source_c", "displayName": "Lead Source"})
    fields = {f.key: f for f in make().fields()}
    assert "lead_source_c" in fields
    assert "cql_source" not in fields
    assert fields["lead_source_c"].label == "Lead Source"
    assert not fields["lead_source_c"].custom
