"""A staff member in a real browser: log in, create a connection (a draft),
add a custom field mapping and a rule, press Start syncing, and read the
finished initial sync and its events. Debian's chromium, headless, driven by Playwright against
the live server; the apps are the sandboxes on loopback.

The queued run executes inline (django-q2's sync mode) so that no qcluster
is needed: the request that presses Start syncing runs the task before it
answers, exactly as a worker would run it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django_q.conf import Conf

from connections.models import Account, Connection, FieldMapping, SyncRun
from connectors import sandbox
from tests.engine.world import App

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "browser-test-password-1"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def chromium() -> str:
    if not (os.path.exists(CHROMIUM) and shutil.which(CHROMIUM)):
        reason = f"{CHROMIUM} is missing: apt-get install chromium"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    srv = sandbox.serve(keys=("google", "hubspot"))
    yield srv
    srv.stop()


@pytest.fixture
def apps(server: Any) -> dict[str, App]:
    """Google and HubSpot accounts authorized and read, as after "Test
    connection"; HubSpot has a custom date property "birthday" that a
    person made in HubSpot."""
    google, hubspot = App(server, "google"), App(server, "hubspot")
    for app in (google, hubspot):
        app.reset()
    token = hubspot.ctl("POST", "/tokens", {"ttl": 3600})["access_token"]
    created = requests.post(
        f"{sandbox.api_base_url(server, 'hubspot')}/crm/v3/properties/contacts",
        json={
            "name": "birthday",
            "label": "Birthday",
            "type": "date",
            "fieldType": "date",
            "groupName": "contactinformation",
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    google.make_account()
    hubspot.make_account()
    return {"google": google, "hubspot": hubspot}


@pytest.fixture
def superuser(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("jonas", "jonas@example.com", PASSWORD)


@pytest.fixture
def inline_tasks(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    # django-q2 reads Q_CLUSTER once, at import (Conf.SYNC); async_task looks at
    # Conf.SYNC when called, so that is the switch that takes effect now
    monkeypatch.setattr(Conf, "SYNC", True)


def seed_ann_in_google(google: App) -> None:
    """Ann, with a birthday, made in Google Contacts through its API."""
    assert google.account is not None
    token = google.account.get_credentials().access_token
    response = requests.post(
        f"{google.account.base_url}/people:createContact",
        json={
            "names": [{"givenName": "Ann", "familyName": "Lee"}],
            "emailAddresses": [{"value": "ann@example.com"}],
            "birthdays": [{"date": {"year": 1990, "month": 5, "day": 17}}],
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def test_a_staff_member_sets_up_a_connection_and_sees_its_first_sync(
    chromium, live_server, apps, superuser, inline_tasks, monkeypatch
):
    from playwright.sync_api import expect, sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the test's own
    # ORM reads between steps are plain blocking calls (the server is another thread)
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    google, hubspot = apps["google"], apps["hubspot"]
    seed_ann_in_google(google)
    base = live_server.url

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=LAUNCH_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)

            # log in through the admin (allauth's login page)
            page.goto(f"{base}/admin/")
            page.fill("input[name=login]", "jonas")
            page.fill("input[name=password]", PASSWORD)
            page.locator("form:has(input[name=password]) [type=submit]").click()
            expect(page.locator("#site-name")).to_be_visible()

            # create the connection: Google ↔ HubSpot
            page.goto(f"{base}/admin/connections/connection/add/")
            page.fill("input[name=name]", "Google ↔ HubSpot")
            page.select_option("select[name=account_a]", str(google.account.pk))
            page.select_option("select[name=account_b]", str(hubspot.account.pk))
            page.click("input[name=_save]")
            # the second step: the draft's own page, with its checklist
            expect(page.locator(".messagelist")).to_contain_text("was added successfully")
            conn = Connection.objects.get(name="Google ↔ HubSpot")
            assert conn.state == Connection.State.DRAFT
            assert conn.mappings.filter(is_default=True).exists()
            expect(page.locator("#checklist")).to_contain_text("Field mappings")

            # a custom mapping: Google's birthday ↔ HubSpot's custom birthday (date ↔ date)
            row = page.locator("#mappings-group tr.form-row:not(.has_original)").first
            row.locator("select[name$=field_a]").select_option("birthday")
            row.locator("select[name$=field_b]").select_option("birthday")
            row.locator("select[name$=direction]").select_option("two_way")
            page.click("input[name=_continue]")
            expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
            mapping = FieldMapping.objects.get(connection=conn, field_a="birthday")
            assert (mapping.field_b, mapping.is_default) == ("birthday", False)
            expect(page.locator("#mappings-group")).to_contain_text("Google Contacts ↔ HubSpot")

            # the Google → HubSpot rule: only contacts with a birthday, and mark them as leads
            page.locator("#rules-group a.inlinechangelink").first.click()
            expect(page.locator("#content h2").first).to_have_text(
                "Google Contacts → HubSpot rule #1"
            )
            page.select_option("select[name=conditions-0-operator]", "set")
            page.select_option("select[name=conditions-0-field]", "birthday")
            page.select_option("select[name=actions-0-kind]", "set_field")
            page.select_option("select[name=actions-0-field]", "lifecyclestage")
            page.fill("input[name=actions-0-value]", "lead")
            page.click("input[name=_save]")
            # back on the connection's page
            expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
            expect(page.locator("#rules-group")).to_contain_text(
                "IF a Google Contacts contact: Birthday is set THEN sync it to HubSpot"
            )
            rule = conn.rules.get(direction="a_to_b")
            assert [str(c) for c in rule.conditions.all()] == ["birthday is set"]
            assert [str(a) for a in rule.actions.all()] == ["set lifecyclestage = lead"]

            # nothing was written before Start
            assert SyncRun.objects.filter(connection=conn).count() == 0
            assert hubspot.by_email("ann@example.com") == []

            # Start syncing: the initial sync runs inline, then the page comes back
            page.locator(".object-tools button", has_text="Start syncing").click()
            expect(page.locator(".messagelist")).to_contain_text("the initial sync is queued")
            page.reload()

            run = SyncRun.objects.get(connection=conn)
            assert run.status == SyncRun.Status.SUCCEEDED, run.error
            assert run.trigger == SyncRun.Trigger.INITIAL
            health = page.locator("#health")
            expect(health).to_contain_text("Listening for changes")
            expect(health).to_contain_text("by jonas")
            last_run = health.locator("table.last-runs tbody tr").first
            expect(last_run).to_contain_text("Initial sync")
            expect(last_run).to_contain_text("Succeeded")
            expect(health.locator("a.count-in_sync strong")).to_have_text("1")

            # the run and its events, down to the field
            last_run.locator("a").first.click()
            expect(page.locator("#content")).to_contain_text("Succeeded")
            page.locator("a", has_text="events").first.click()
            created = page.locator("#result_list tbody tr", has_text="Created")
            expect(created).to_contain_text("ann@example.com")
            created.locator("th a, td a").first.click()
            changes = page.locator(".field-changes_table")
            expect(changes.locator("tr", has_text="Birthday")).to_contain_text("→1990-05-17")
            expect(changes.locator("tr", has_text="Lifecycle Stage")).to_contain_text("→lead")
        finally:
            browser.close()

    ann = hubspot.one("ann@example.com")
    assert ann.fields.get("birthday") == "1990-05-17"
    assert ann.fields.get("lifecyclestage") == "lead"
    assert Account.objects.count() == 2
