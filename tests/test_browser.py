"""The ops flow in a real browser, as a marketing-ops person walks it: log
in, add a connection (a draft: nothing is written to any app), choose the
Mailchimp audience, a mapping and a rule, run a Dry run and read its
preview, press Start syncing, read the finished initial sync and a
contact's timeline; then a view-only colleague sees all of it and can change
nothing. Debian's chromium, headless, driven by Playwright against the live
server; the apps are the sandboxes on loopback. Every label the test reads
is in the apps' names ("Google Contacts → Mailchimp", never "A → B").

With DRIFTSYNC_SCREENSHOTS=<folder> set, the test also saves the screenshots
the README shows (docs/screenshots); CI leaves it unset.

The queued run executes inline (django-q2's sync mode) so that no qcluster
is needed: the request that presses Start syncing runs the task before it
answers, exactly as a worker would run it."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from django_q.conf import Conf

from connections.models import Account, Connection, ContactLink, FieldMapping, SyncRun
from connectors import sandbox
from connectors.sandbox.control import SandboxControl
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
VIEWER_PASSWORD = "viewer-password-1"
VIEWPORT = {"width": 1280, "height": 900}
#: a second audience, so that choosing one is a real choice
NEWSLETTER = "newsletter01"
#: labels that name a side instead of an app
SIDE_WORDS = ["A → B", "B → A", "A ↔ B", "Side A", "Side B", "Settings a", "Settings b"]

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
    srv = sandbox.serve(keys=("google", "mailchimp"))
    yield srv
    srv.stop()


@pytest.fixture
def apps(server: Any) -> dict[str, App]:
    """Google Contacts and Mailchimp accounts authorized and tested. Google
    holds Ann (Acme), Bob (no company) and Cy (Initech); Mailchimp's first
    audience already has Cy, with the same name; a second audience,
    "Newsletter", is where this connection will sync."""
    google, mailchimp = App(server, "google"), App(server, "mailchimp")
    for app in (google, mailchimp):
        app.reset()
    control = SandboxControl.of(server, "mailchimp", timeout=10)
    phone = {"tag": "PHONE", "name": "Phone Number", "type": "phone"}
    control.new_list(id=NEWSLETTER, name="Newsletter", merge_fields=[phone])
    google.create("ann@example.com", "Ann", "Lee", company="Acme", phone="+1 555 0100")
    google.create("bob@example.com", "Bob", "Ray")
    google.create("cy@example.com", "Cy", "Young", company="Initech")
    google.make_account()
    mailchimp.make_account()
    mailchimp.settings = {"audience": NEWSLETTER}
    # Cy is already in the Newsletter audience: the preview says "already equal"
    cy = {"email": "cy@example.com", "first_name": "Cy", "last_name": "Young"}
    control.call("POST", "/contacts", cy, params={"list_id": NEWSLETTER})
    return {"google": google, "mailchimp": mailchimp}


@pytest.fixture
def superuser(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("jonas", "jonas@example.com", PASSWORD)


@pytest.fixture
def viewer(view_only_user: Any) -> Any:
    return view_only_user


@pytest.fixture
def inline_tasks(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    # django-q2 reads Q_CLUSTER once, at import (Conf.SYNC); async_task looks at
    # Conf.SYNC when called, so that is the switch that takes effect now
    monkeypatch.setattr(Conf, "SYNC", True)


def writes(app: App) -> dict[str, int]:
    """The app's API calls that change something (not the token endpoint)."""
    return {
        route: n
        for route, n in app.stats().items()
        if route.split(" ")[0] in ("POST", "PUT", "PATCH", "DELETE") and "oauth" not in route
    }


def shoot(page: Any, name: str) -> None:
    """A full-page screenshot for the README, only when asked for."""
    folder = os.environ.get("DRIFTSYNC_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def log_in(page: Any, base: str, username: str, password: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{base}/admin/")
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", password)
    page.locator("form:has(input[name=password]) [type=submit]").click()
    expect(page.locator("#site-name")).to_be_visible()


def in_app_names(page: Any) -> None:
    text = page.locator("#content").inner_text()
    for word in SIDE_WORDS:
        at = text.find(word)
        assert at < 0, f"{page.url} says “{word}”: …{text[max(0, at - 200) : at + 50]}…"


def test_a_staff_member_sets_up_a_connection_and_a_viewer_audits_it(
    chromium, live_server, apps, superuser, viewer, inline_tasks, monkeypatch
):
    from playwright.sync_api import expect, sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the test's own
    # ORM reads between steps are plain blocking calls (the server is another thread)
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    google, mailchimp = apps["google"], apps["mailchimp"]
    before = {"google": writes(google), "mailchimp": writes(mailchimp)}
    base = live_server.url

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(30_000)
            log_in(page, base, "jonas", PASSWORD)

            # 1. add a connection: the two accounts; saving makes a draft
            page.goto(f"{base}/admin/connections/connection/add/")
            in_app_names(page)  # "first app" and "second app" until they are chosen
            page.fill("input[name=name]", "Google Contacts ↔ Newsletter")
            page.select_option("select[name=account_a]", str(google.account.pk))
            page.select_option("select[name=account_b]", str(mailchimp.account.pk))
            page.click("input[name=_save]")
            expect(page.locator(".messagelist")).to_contain_text("was added successfully")
            conn = Connection.objects.get(name="Google Contacts ↔ Newsletter")
            assert conn.state == Connection.State.DRAFT
            checklist = page.locator("#checklist")
            expect(checklist).to_contain_text("nothing is written to any app yet")
            expect(checklist.locator("li.missing")).to_contain_text("Audience")
            expect(checklist).to_contain_text("Choose the Mailchimp audience")
            expect(checklist.locator("button", has_text="Start syncing")).to_be_disabled()

            # 2. the audience: a dropdown of the account's audiences
            audience = page.locator("select[name=setting_b__audience]")
            expect(audience.locator("option", has_text="Newsletter")).to_have_count(1)
            audience.select_option(NEWSLETTER)
            page.click("input[name=_continue]")
            expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
            conn.refresh_from_db()
            assert conn.settings_b.get("audience") == NEWSLETTER
            expect(page.locator("#checklist li.missing")).to_have_count(0)

            # 3. a mapping: Google is the phone book, phones go one way
            phone_pk = FieldMapping.objects.get(connection=conn, field_a="phone").pk
            phone = page.locator(f"#mappings-group tr:has(input[name$='-id'][value='{phone_pk}'])")
            expect(phone.locator("select[name$=field_a] option:checked")).to_have_text(
                "Phone (phone)"
            )
            direction = phone.locator("select[name$=direction]")
            expect(direction.locator("option:checked")).to_have_text("Google Contacts ↔ Mailchimp")
            direction.select_option(label="Google Contacts → Mailchimp")
            page.click("input[name=_continue]")
            expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
            mapping = FieldMapping.objects.get(connection=conn, field_a="phone")
            assert mapping.direction == "a_to_b"

            # 4. a rule: only contacts with a company go to Mailchimp
            rule = conn.rules.get(direction="a_to_b")
            rule_url = reverse("admin:connections_rule_change", args=[rule.pk])
            page.locator(f"#rules-group a.inlinechangelink[href='{rule_url}']").click()
            expect(page.locator("#content h2").first).to_have_text(
                "Google Contacts → Mailchimp rule #1"
            )
            page.select_option("select[name=conditions-0-operator]", "set")
            page.select_option("select[name=conditions-0-field]", "organization")
            page.click("input[name=_save]")
            expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
            expect(page.locator("#rules-group")).to_contain_text(
                "IF a Google Contacts contact: Company is set THEN sync it to Mailchimp"
            )
            in_app_names(page)
            shoot(page, "connection-draft")

            # a draft writes nothing to either app
            assert SyncRun.objects.filter(connection=conn).count() == 0
            assert writes(google) == before["google"]
            assert writes(mailchimp) == before["mailchimp"]

            # 5. Dry run: the preview, each contact once
            page.locator(".object-tools button", has_text="Dry run").click()
            expect(page.locator("#content-main.dry-run .finished")).to_contain_text("Succeeded")
            change = page.locator("table.part-change")
            expect(page.locator("h2#change")).to_contain_text("What would change (1 contact)")
            ann_row = change.locator("> tbody > tr", has_text="ann@example.com")
            expect(ann_row).to_have_count(1)
            expect(ann_row).to_contain_text("Mailchimp")
            expect(ann_row).to_contain_text("Created")
            # Bob has no company: out of the rule's scope, counted, not listed
            expect(page.locator("tr.counter-out-of-scope td").first).to_have_text("1")
            expect(page.locator("#content-main")).not_to_contain_text("bob@example.com")
            expect(page.locator("table.part-equal")).to_contain_text("cy@example.com")
            for email in ("ann@example.com", "cy@example.com"):
                contact_cell = re.compile(f"^{re.escape(email)}$")
                cells = page.locator("table.diffs > tbody > tr > td", has_text=contact_cell)
                expect(cells).to_have_count(1)
            in_app_names(page)
            shoot(page, "dry-run-preview")
            # still nothing written
            assert writes(google) == before["google"]
            assert writes(mailchimp) == before["mailchimp"]
            assert mailchimp.by_email("ann@example.com") == []

            # 6. Start syncing: the initial sync runs inline, then the page comes back
            page.goto(f"{base}{reverse('admin:connections_connection_change', args=[conn.pk])}")
            page.locator(".object-tools button", has_text="Start syncing").click()
            expect(page.locator(".messagelist")).to_contain_text("the initial sync is queued")
            page.reload()
            run = SyncRun.objects.get(connection=conn, dry_run=False)
            assert run.status == SyncRun.Status.SUCCEEDED, run.error
            assert run.trigger == SyncRun.Trigger.INITIAL
            health = page.locator("#health")
            expect(health).to_contain_text("Listening for changes")
            expect(health).to_contain_text("by jonas")
            last_run = health.locator("table.last-runs tbody tr").first
            expect(last_run).to_contain_text("Initial sync")
            expect(last_run).to_contain_text("Succeeded")
            expect(health.locator("a.count-in_sync strong")).to_have_text("2")
            in_app_names(page)
            shoot(page, "connection-active")

            # 7. a contact's timeline, from its creation
            health.locator("a.count-in_sync").click()
            page.locator("#result_list tbody tr", has_text="ann@example.com").locator(
                "th a"
            ).first.click()
            timeline = page.locator(".field-timeline table.timeline")
            created = timeline.locator("tr.event-created")
            expect(created).to_contain_text("Mailchimp")
            expect(created.locator("a", has_text="Created")).to_have_count(1)
            in_app_names(page)
            link = ContactLink.objects.get(connection=conn, email="ann@example.com")

            # 8. a view-only colleague sees it all and changes nothing
            context = browser.new_context(viewport=VIEWPORT)
            seen = context.new_page()
            seen.set_default_timeout(30_000)
            log_in(seen, base, viewer.username, VIEWER_PASSWORD)
            change_url = reverse("admin:connections_connection_change", args=[conn.pk])
            seen.goto(f"{base}{change_url}")
            expect(seen.locator("#content h1, #content h2").first).to_be_visible()
            expect(seen.locator("#health")).to_contain_text("Listening for changes")
            expect(seen.locator("#health table.last-runs")).to_contain_text("Initial sync")
            expect(seen.locator(".object-tools button")).to_have_count(0)
            expect(seen.locator("input[name=_save], input[name=_continue]")).to_have_count(0)
            expect(seen.locator("#content")).to_contain_text("Newsletter")
            expect(seen.locator("#mappings-group")).to_contain_text("Mailchimp: Phone Number")
            in_app_names(seen)
            seen.locator("#health table.last-runs tbody tr").first.locator("a").first.click()
            expect(seen.locator("#content")).to_contain_text("Succeeded")
            seen.locator("a", has_text="events").first.click()
            expect(seen.locator("#result_list")).to_contain_text("ann@example.com")
            link_url = reverse("admin:connections_contactlink_change", args=[link.pk])
            seen.goto(f"{base}{link_url}")
            expect(seen.locator(".field-timeline tr.event-created")).to_contain_text("Mailchimp")

            # and a POST by hand is refused: the buttons are not merely hidden
            token = next(c["value"] for c in context.cookies() if c["name"] == "csrftoken")
            headers = {"X-CSRFToken": token, "Referer": f"{base}{change_url}"}
            for name in ("sync_now", "pause", "full_resync"):
                url = reverse(f"admin:connections_connection_{name}", args=[conn.pk])
                answer = seen.request.post(f"{base}{url}", headers=headers)
                assert answer.status == 403, (name, answer.status)
            answer = seen.request.post(
                f"{base}{change_url}", headers=headers, form={"name": "renamed"}
            )
            assert answer.status == 403
            context.close()
        finally:
            browser.close()

    conn.refresh_from_db()
    assert (conn.name, conn.state) == ("Google Contacts ↔ Newsletter", Connection.State.ACTIVE)
    assert SyncRun.objects.filter(connection=conn, dry_run=False).count() == 1
    ann = mailchimp.one("ann@example.com")
    assert ann.fields.get("PHONE")
    assert mailchimp.by_email("bob@example.com") == []
    assert Account.objects.count() == 2
