"""The apps' official Python SDKs run unchanged against the sandboxes
(``manage.py sandbox``): pointed at the sandbox's base URL, each lists
contacts, creates one, updates it and reads it back. Where an SDK trips on
the sandbox, the sandbox differs from the real API: fix the sandbox."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from connectors.sandbox.control import SandboxControl
from connectors.sandbox.mailchimp import DEFAULT_LIST_ID, member_hash
from tests.sandbox_limits import realistic


@pytest.fixture
def app(control: Callable[[str], SandboxControl]) -> Any:
    made: list[SandboxControl] = []

    def get(key: str) -> SandboxControl:
        ctl = control(key)
        ctl.reset()
        realistic(ctl)
        made.append(ctl)
        return ctl

    yield get
    for ctl in made:
        realistic(ctl)


def eventually(read: Callable[[], Any], done: Callable[[Any], bool], tries: int = 50) -> Any:
    """Read until ``done``: an app that serves stale reads after a write
    (Google) is read again, as its clients do."""
    for _ in range(tries):
        value = read()
        if done(value):
            return value
        time.sleep(0.1)
    return value


def test_mailchimp_marketing(app: Any) -> None:
    import mailchimp_marketing

    ctl = app("mailchimp")
    ctl.create(email="old@example.com", first_name="Old")
    client = mailchimp_marketing.Client()
    client.set_config({"access_token": ctl.new_token()["access_token"], "server": "us1"})
    client.api_client.host = ctl.base_url  # the SDK's host setting

    listed = client.lists.get_list_members_info(DEFAULT_LIST_ID)
    assert [m["email_address"] for m in listed["members"]] == ["old@example.com"]
    created = client.lists.add_list_member(
        DEFAULT_LIST_ID,
        {
            "email_address": "ada@example.com",
            "status": "subscribed",
            "merge_fields": {"FNAME": "Ada"},
        },
    )
    assert created["id"] == member_hash("ada@example.com")
    client.lists.update_list_member(
        DEFAULT_LIST_ID, created["id"], {"merge_fields": {"LNAME": "Lovelace"}}
    )
    read = client.lists.get_list_member(DEFAULT_LIST_ID, created["id"])
    assert (read["merge_fields"]["FNAME"], read["merge_fields"]["LNAME"]) == ("Ada", "Lovelace")
    assert read["status"] == "subscribed"


def test_hubspot_api_client(app: Any) -> None:
    from hubspot import HubSpot
    from hubspot.crm.contacts import SimplePublicObjectInput, SimplePublicObjectInputForCreate

    ctl = app("hubspot")
    ctl.create(email="old@example.com", first_name="Old")
    api = HubSpot(access_token=ctl.new_token()["access_token"], host=ctl.base_url)
    contacts = api.crm.contacts.basic_api

    page = contacts.get_page(limit=10, properties=["email", "firstname"])
    assert [c.properties["email"] for c in page.results] == ["old@example.com"]
    created = contacts.create(
        simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
            properties={"email": "ada@example.com", "firstname": "Ada"}
        )
    )
    contacts.update(
        created.id,
        simple_public_object_input=SimplePublicObjectInput(properties={"lastname": "Lovelace"}),
    )
    read = contacts.get_by_id(created.id, properties=["email", "firstname", "lastname"])
    assert read.properties["email"] == "ada@example.com"
    assert (read.properties["firstname"], read.properties["lastname"]) == ("Ada", "Lovelace")


def test_google_api_python_client(app: Any) -> None:
    from google.oauth2.credentials import Credentials
    from googleapiclient.discovery import build

    ctl = app("google")
    ctl.create(email="old@example.com", first_name="Old", profile=False)
    # the People v1 discovery document shipped inside the package, its root
    # URL pointed at the sandbox
    service = build(
        "people",
        "v1",
        credentials=Credentials(ctl.new_token()["access_token"]),
        static_discovery=True,
        client_options={"api_endpoint": ctl.root + "/"},
    )
    people = service.people()
    fields = "names,emailAddresses,metadata"

    listed = people.connections().list(resourceName="people/me", personFields=fields).execute()
    assert [p["emailAddresses"][0]["value"] for p in listed["connections"]] == ["old@example.com"]
    created = people.createContact(
        body={"names": [{"givenName": "Ada"}], "emailAddresses": [{"value": "ada@example.com"}]},
        personFields=fields,
    ).execute()
    rn = created["resourceName"]
    updated = people.updateContact(
        resourceName=rn,
        updatePersonFields="names",
        personFields=fields,
        body={"etag": created["etag"], "names": [{"givenName": "Ada", "familyName": "Lovelace"}]},
    ).execute()
    assert updated["names"][0]["familyName"] == "Lovelace"
    read = eventually(
        lambda: people.get(resourceName=rn, personFields=fields).execute(),
        lambda person: person["etag"] == updated["etag"],
    )
    assert read["names"][0]["familyName"] == "Lovelace"
    assert read["emailAddresses"][0]["value"] == "ada@example.com"
