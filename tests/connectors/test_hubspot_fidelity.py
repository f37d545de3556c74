"""HubSpot as it behaves today, pinned against the sandbox's realistic defaults.

Sources (also in docs/api-fidelity.md):
- 409 "Contact already exists. Existing ID: n" on create: HubSpot/hubspot-api-nodejs#545,
  HubSpot/hubspot-api-python#51.
- 400 VALIDATION_ERROR "Cannot set PropertyValueCoordinates{... propertyName=email,
  value=x} on A. B already has that value.": verbatim production answers quoted in a
  public HubSpot intake test (code index id 68689323038).
- 403 MISSING_SCOPES with errors[].context.requiredGranularScopes (or requiredScopes):
  HubSpot/hubspot-api-nodejs#50 and #268.
- private-app token scopes: POST /oauth/v2/private-apps/get/access-token-info
  (https://developers.hubspot.com/docs/api/private-apps; HubSpot/hubspot-api-php#171).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.conf import settings

from connectors.base import AuthError, ConnectorError, ContactWrite, Credentials
from connectors.hubspot.client import existing_id
from connectors.hubspot.connector import REQUIRED_SCOPES, HubSpotConnector
from connectors.sandbox import SandboxServer, api_base_url, serve
from connectors.sandbox.control import SandboxControl
from connectors.sandbox.hubspot import FULL_SCOPES
from tests.sandbox_limits import realistic


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    srv = serve(keys=("hubspot",))
    yield srv
    srv.stop()


@pytest.fixture
def base(server: SandboxServer) -> str:
    url = api_base_url(server, "hubspot")
    SandboxControl(url).call("POST", "/reset")
    realistic(url, "hubspot")
    return url


def token(base: str, scopes: tuple[str, ...] | None = None) -> dict[str, Any]:
    body = {} if scopes is None else {"scopes": list(scopes)}
    return SandboxControl(base).call("POST", "/tokens", body)


def oauth_connector(base: str, scopes: tuple[str, ...] | None = None) -> HubSpotConnector:
    issued = token(base, scopes)
    credentials = Credentials(access_token=issued["access_token"])
    return HubSpotConnector(credentials, {}, base_url=base)


def private_app_connector(base: str, scopes: tuple[str, ...]) -> HubSpotConnector:
    # a pasted private-app token: the connector knows it only as an api key
    issued = token(base, scopes)
    return HubSpotConnector(Credentials(api_key=issued["access_token"]), {}, base_url=base)


def without(scope: str) -> tuple[str, ...]:
    return tuple(s for s in FULL_SCOPES if s != scope)


def seed(base: str, **person: Any) -> str:
    return SandboxControl(base).call("POST", "/contacts", person)["id"]


# -- scopes --------------------------------------------------------------------


def test_the_connector_requests_every_scope_it_uses() -> None:
    assert set(REQUIRED_SCOPES) == set(FULL_SCOPES)
    assert set(REQUIRED_SCOPES) <= set(settings.SOCIALACCOUNT_PROVIDERS["hubspot"]["SCOPE"])


def test_sandbox_answers_a_missing_scope_with_missing_scopes(base: str) -> None:
    issued = token(base, without("crm.schemas.contacts.write"))
    response = requests.post(
        f"{base}/crm/v3/properties/contacts",
        json={"name": "x", "label": "X", "type": "string", "fieldType": "text", "groupName": "g"},
        headers={"Authorization": f"Bearer {issued['access_token']}"},
        timeout=5,
    )
    assert response.status_code == 403
    body = response.json()
    assert body["category"] == "MISSING_SCOPES"
    assert body["errors"][0]["context"]["requiredGranularScopes"] == ["crm.schemas.contacts.write"]


def test_check_names_the_scope_an_oauth_token_lacks(base: str) -> None:
    connector = oauth_connector(base, without("crm.schemas.contacts.write"))
    with pytest.raises(AuthError) as caught:
        connector.check()
    assert "crm.schemas.contacts.write" in str(caught.value)


def test_check_names_the_scope_a_private_app_token_lacks(base: str) -> None:
    connector = private_app_connector(base, without("crm.objects.contacts.write"))
    with pytest.raises(AuthError) as caught:
        connector.check()
    assert "crm.objects.contacts.write" in str(caught.value)


def test_check_passes_with_every_scope(base: str) -> None:
    assert oauth_connector(base).check().remote_id
    assert private_app_connector(base, FULL_SCOPES).check().remote_id


def test_a_write_refused_for_a_scope_says_which_scope(base: str) -> None:
    connector = oauth_connector(base, without("crm.schemas.contacts.write"))
    write = ContactWrite(None, "new@example.com", {}, add_tags=frozenset({"VIP"}))
    with pytest.raises(AuthError) as caught:
        connector.write_contacts([write])
    assert "crm.schemas.contacts.write" in str(caught.value)


# -- email collisions ------------------------------------------------------------


def test_existing_id_is_read_from_both_answers() -> None:
    conflict = ConnectorError("Contact already exists. Existing ID: 123", status=409)
    taken = ConnectorError(
        "Cannot set PropertyValueCoordinates{portalId=44956899, objectTypeId=ObjectTypeId"
        "{legacyObjectType=CONTACT}, propertyName=email, value=a@b.co} on 552148386511. "
        "552239500007 already has that value.",
        status=400,
    )
    assert existing_id(conflict) == "123"
    # the first id is the record being written; the one that has the value is the second
    assert existing_id(taken) == "552239500007"
    assert existing_id(ConnectorError("Email address x is invalid", status=400)) is None


def test_sandbox_refuses_an_update_to_a_taken_email_with_400(base: str) -> None:
    seed(base, email="taken@example.com")
    other = seed(base, email="other@example.com")
    issued = token(base)
    response = requests.patch(
        f"{base}/crm/v3/objects/contacts/{other}",
        json={"properties": {"email": "taken@example.com"}},
        headers={"Authorization": f"Bearer {issued['access_token']}"},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["category"] == "VALIDATION_ERROR"
    assert "already has that value" in response.json()["message"]


def test_an_update_to_an_email_another_contact_has_binds_to_that_contact(base: str) -> None:
    holder = seed(base, email="taken@example.com", first_name="Holder")
    other = seed(base, email="other@example.com")
    connector = oauth_connector(base)
    current = connector.get_contacts([other])[other]
    write = ContactWrite(
        other,
        "taken@example.com",
        {"email": "taken@example.com", "jobtitle": "CTO"},
        current=current,
    )
    [result] = connector.write_contacts([write])
    assert result.ok, result.error
    assert result.contact is not None
    assert result.contact.id == holder
    # the rest of the write landed on the contact that has the email
    assert connector.get_contacts([holder])[holder].fields["jobtitle"] == "CTO"


def test_an_update_to_an_email_a_synced_contact_has_writes_nothing_over_it(base: str) -> None:
    """The contact that has the email is synced with another person: the two
    are duplicates for a person to merge, never one written over the other."""
    holder = seed(base, email="taken@example.com", first_name="Holder")
    other = seed(base, email="other@example.com")
    connector = oauth_connector(base)
    connector.bound_elsewhere = lambda remote_id: remote_id == holder
    current = connector.get_contacts([other])[other]
    write = ContactWrite(
        other,
        "taken@example.com",
        {"email": "taken@example.com", "jobtitle": "CTO"},
        current=current,
    )
    [result] = connector.write_contacts([write])
    assert result.error is not None
    assert f"HubSpot contact {holder} already has the email" in result.error.message
    assert "merge them in HubSpot" in result.error.message
    assert connector.get_contacts([holder])[holder].fields.get("jobtitle") in (None, "")
