"""The connection page's health against known data: state, last synced,
link counts and their filtered lists, failing reasons, last runs, and the
30-day SVG chart."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape

import pytest
from django.urls import reverse
from django.utils import timezone

from connections import health
from connections.models import Connection, ContactLink, LinkStatus, SyncEvent, SyncRun

pytestmark = pytest.mark.django_db

NOW = timezone.make_aware(dt.datetime(2025, 3, 31, 15, 0))


@pytest.fixture
def conn(make_connection) -> Connection:
    return make_connection(name="HubSpot ↔ Google")


def run_on(conn: Connection, when: dt.datetime, **values) -> SyncRun:
    values.setdefault("status", SyncRun.Status.SUCCEEDED)
    values.setdefault("finished_at", when + dt.timedelta(seconds=30))
    return SyncRun.objects.create(connection=conn, started_at=when, **values)


def links(conn: Connection, status: str, n: int, reason: str = "") -> None:
    start = ContactLink.objects.count()
    for i in range(start, start + n):
        ContactLink.objects.create(
            connection=conn, id_a=f"a{i}", id_b=f"b{i}", email=f"p{i}@x.io", status=status,
            status_reason=reason,
        )  # fmt: skip


def plain(text: str) -> str:
    return text.replace("\xa0", " ")


# --------------------------------------------------------------------- state


@pytest.mark.parametrize(
    ("state", "reason", "key", "label"),
    [
        ("paused", "Paused by jonas in the admin.", "paused", "Paused"),
        ("needs_reauth", "HubSpot: token revoked", "needs_reauth", "Needs re-authorization"),
        ("error", "field 'x' no longer exists", "error", "Error"),
        ("error", "", "error", "Error"),
    ],
)
def test_the_state_says_what_stops_the_connection_and_why(
    make_connection, state, reason, key, label
):
    conn = make_connection(state=state, state_reason=reason)
    shown = health.connection_state(conn)
    assert (shown.key, shown.label) == (key, label)
    assert shown.reason == (reason or "no reason recorded")


def test_a_draft_is_not_started_and_says_what_is_missing_first(make_account, make_connection):
    a = make_account("hubspot", status="ok")
    b = make_account("google", status="ok")
    draft = make_connection(a, b, state=Connection.State.DRAFT)
    shown = health.connection_state(draft, NOW)
    assert (shown.key, shown.label) == ("draft", "Draft: not started")
    assert shown.reason.startswith("Field mappings: ")
    # an account never tested comes first: the checklist's order
    b.status = "unchecked"
    b.save()
    draft.refresh_from_db()
    shown = health.connection_state(draft, NOW)
    assert shown.reason.startswith("Accounts: the Google Contacts account")


def test_an_account_problem_names_the_app_not_the_side(make_account, make_connection):
    broken = make_account("google", status="needs_reauth", status_reason="token revoked")
    conn = make_connection(make_account("hubspot", status="ok"), broken)
    (problem,) = health.account_problems(conn)
    assert problem.side == "Google Contacts"


def test_an_idle_active_connection_is_listening_for_changes(conn):
    run_on(conn, NOW - dt.timedelta(hours=1))
    assert health.connection_state(conn, NOW).key == "listening"


def test_a_running_sync_is_syncing_and_a_full_one_is_scanning(conn):
    run = run_on(conn, NOW, status=SyncRun.Status.RUNNING, finished_at=None)
    conn.running_since = NOW
    state = health.connection_state(conn, NOW)
    assert (state.key, state.label) == ("syncing", "Syncing")
    assert state.run_url == reverse("admin:connections_syncrun_change", args=[run.pk])
    SyncRun.objects.filter(pk=run.pk).update(full=True)
    assert health.connection_state(conn, NOW).key == "scanning"


def test_a_run_left_behind_by_a_dead_worker_is_not_shown_as_syncing(conn):
    run_on(conn, NOW - dt.timedelta(days=1), status=SyncRun.Status.RUNNING, finished_at=None)
    conn.running_since = None
    assert health.connection_state(conn, NOW).key == "listening"
    conn.running_since = NOW - dt.timedelta(days=1)  # the lease ran out long ago
    assert health.connection_state(conn, NOW).key == "listening"


# --------------------------------------------------------------- last synced


def test_last_synced_says_when_and_by_whom(conn, django_user_model):
    jonas = django_user_model.objects.create_user("jonas")
    when = NOW - dt.timedelta(minutes=5)
    run_on(conn, when - dt.timedelta(seconds=30), finished_at=when, started_by=jonas)
    conn.last_synced_at, conn.last_synced_by = when, jonas
    assert plain(health.last_synced(conn, NOW)) == "Last synced 5 minutes ago by jonas"


def test_a_scheduled_sync_is_by_the_scheduler_and_a_webhook_one_says_so(conn):
    when = NOW - dt.timedelta(hours=2)
    run = run_on(conn, when - dt.timedelta(seconds=30), finished_at=when, trigger="schedule")
    conn.last_synced_at = when
    assert plain(health.last_synced(conn, NOW)) == "Last synced 2 hours ago by the scheduler"
    SyncRun.objects.filter(pk=run.pk).update(trigger="webhook")
    assert plain(health.last_synced(conn, NOW)) == "Last synced 2 hours ago after a webhook"


def test_a_connection_that_never_synced_says_so(conn):
    assert health.last_synced(conn, NOW) == "Never synced yet"


# -------------------------------------------------------------------- counts


def test_link_counts_link_to_the_filtered_contact_list(admin_client, conn, make_connection):
    links(conn, LinkStatus.IN_SYNC, 4)
    links(conn, LinkStatus.EXCLUDED, 2)
    links(conn, LinkStatus.DUPLICATE, 1)
    links(conn, LinkStatus.FAILING, 3, "HubSpot refused it: email is invalid")
    links(conn, LinkStatus.PENDING, 5)  # not counted on the page
    links(make_connection(), LinkStatus.IN_SYNC, 6)  # another connection's
    counts = health.link_counts(conn)
    assert [(c.label, c.count) for c in counts] == [
        ("in sync", 4),
        ("excluded", 2),
        ("duplicates", 1),
        ("failing", 3),
    ]
    base = reverse("admin:connections_contactlink_changelist")
    assert counts[0].url == f"{base}?connection__id__exact={conn.pk}&status__exact=in_sync"
    for count in counts:
        listed = admin_client.get(count.url)
        assert listed.status_code == 200
        shown = list(listed.context["cl"].result_list)
        assert len(shown) == count.count
        assert {(link.connection_id, link.status) for link in shown} == {(conn.pk, count.status)}


def test_failing_contacts_are_grouped_by_reason_each_linking_to_its_contacts(admin_client, conn):
    links(conn, LinkStatus.FAILING, 3, "HubSpot refused it: email is invalid")
    links(conn, LinkStatus.FAILING, 1, "Google Contacts refused it: quota & limits")
    links(conn, LinkStatus.FAILING, 2)
    reasons = health.failing_reasons(conn)
    assert [(r.reason, r.count) for r in reasons] == [
        ("HubSpot refused it: email is invalid", 3),
        ("(no reason recorded)", 2),
        ("Google Contacts refused it: quota & limits", 1),
    ]
    for reason in reasons:
        shown = list(admin_client.get(reason.url).context["cl"].result_list)
        assert len(shown) == reason.count
        expected = "" if reason.reason == health.NO_REASON else reason.reason
        assert {(link.status, link.status_reason) for link in shown} == {("failing", expected)}


def test_the_last_ten_runs_are_listed_newest_first_with_their_totals(conn):
    for i in range(12):
        run_on(
            conn,
            NOW - dt.timedelta(hours=12 - i),
            counters={"a": {"created": i}, "b": {"updated": 1, "failed": i % 2}},
        )
    dry = run_on(conn, NOW, dry_run=True)
    rows = health.last_runs(conn)
    assert len(rows) == 10
    assert rows[0].run == dry
    assert rows[0].url == reverse("admin:connections_connection_dry_run", args=[conn.pk, dry.pk])
    assert (rows[1].created, rows[1].updated, rows[1].failed) == (11, 1, 1)
    assert rows[1].url == reverse("admin:connections_syncrun_change", args=[rows[1].run.pk])


# --------------------------------------------------------------------- chart


@pytest.fixture
def month(conn) -> None:
    """Known runs: two on Mar 31 (today), one on Mar 20, one on Mar 2 (the
    first day shown), one on Mar 1 (too old), a dry run and another
    connection's run (neither counted)."""
    day = dt.timedelta(days=1)
    run_on(conn, NOW - dt.timedelta(hours=2), counters={"a": {"created": 3}, "b": {"updated": 2}})
    run_on(conn, NOW, counters={"a": {"created": 1, "failed": 1}, "b": {"created": 2}})
    run_on(conn, NOW - 11 * day, counters={"b": {"updated": 5, "failed": 2}})
    run_on(conn, NOW - 29 * day, counters={"a": {"created": 4}})
    run_on(conn, NOW - 30 * day, counters={"a": {"created": 100}})
    run_on(conn, NOW, dry_run=True, counters={"a": {"created": 50}})
    other = Connection.objects.create(
        name="other", account_a=conn.account_a, account_b=conn.account_b, state="active"
    )
    run_on(other, NOW, counters={"a": {"created": 70}})


def test_daily_totals_sum_real_runs_per_day_over_thirty_days(conn, month):
    days = health.daily_totals(conn, now=NOW)
    assert len(days) == 30
    assert (days[0].day, days[-1].day) == (dt.date(2025, 3, 2), dt.date(2025, 3, 31))
    non_zero = {
        d.day.isoformat(): (d.created, d.updated, d.failed)
        for d in days
        if d.created or d.updated or d.failed
    }
    assert non_zero == {
        "2025-03-02": (4, 0, 0),
        "2025-03-20": (0, 5, 2),
        "2025-03-31": (6, 2, 1),
    }


def test_the_chart_draws_one_bar_per_non_zero_value_with_titles_and_totals(conn, month):
    svg = str(health.render_chart(health.daily_totals(conn, now=NOW)))
    assert svg.startswith("<svg ")
    assert "<script" not in svg
    assert "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")  # no CDN
    bars = re.findall(
        r'<rect class="bar" data-series="(\w+)" data-value="(\d+)"[^>]*?height="([\d.]+)"[^>]*>'
        r"<title>([^<]*)</title>",
        svg,
    )
    assert sorted((series, int(value)) for series, value, _h, _t in bars) == sorted(
        [
            *[("created", 4), ("updated", 5), ("failed", 2)],
            *[("created", 6), ("updated", 2), ("failed", 1)],
        ]
    )
    titles = {unescape(t) for *_rest, t in bars}
    assert {"Mar 2: 4 created", "Mar 20: 5 updated", "Mar 20: 2 failed", "Mar 31: 6 created"} <= (
        titles
    )
    # bar heights are proportional to the values (scale tops out at 10)
    heights = {(s, int(v)): float(h) for s, v, h, _t in bars}
    assert heights[("updated", 5)] == pytest.approx(heights[("created", 4)] * 5 / 4, abs=0.2)
    assert heights[("created", 6)] > heights[("updated", 5)]
    # the legend carries the period's totals, the days their numbers
    assert "<title>Created: 10 in 30 days</title>" in svg
    assert "<title>Updated: 7 in 30 days</title>" in svg
    assert "<title>Failed: 3 in 30 days</title>" in svg
    assert "<title>Mar 20: 0 created, 5 updated, 2 failed</title>" in svg
    assert svg.count('<g class="day"') == 30
    # axes: day labels every fifth day and the last, and the y scale
    x_labels = re.findall(r'<text class="x-label"[^>]*>([^<]*)</text>', svg)
    assert x_labels == ["Mar 2", "Mar 7", "Mar 12", "Mar 17", "Mar 22", "Mar 27", "Mar 31"]
    assert re.findall(r'<text class="y-label"[^>]*>(\d+)</text>', svg) == ["0", "5", "10"]


def test_an_empty_month_still_draws_axes_and_no_bars(conn):
    svg = str(health.render_chart(health.daily_totals(conn, now=NOW)))
    assert 'class="bar"' not in svg
    assert svg.count('class="axis"') == 2
    assert "<title>Created: 0 in 30 days</title>" in svg


# --------------------------------------------------------- on the change page


def test_the_change_page_shows_health_at_a_glance(admin_client, conn, django_user_model):
    jonas = django_user_model.objects.create_user("jonas")
    now = timezone.now()
    finished = now - dt.timedelta(minutes=5)
    run_on(
        conn,
        finished - dt.timedelta(seconds=20),
        finished_at=finished,
        started_by=jonas,
        counters={"a": {"created": 2}},
    )
    Connection.objects.filter(pk=conn.pk).update(last_synced_at=finished, last_synced_by=jonas)
    links(conn, LinkStatus.IN_SYNC, 2)
    links(conn, LinkStatus.FAILING, 1, "HubSpot refused it: email is invalid")
    page = plain(
        admin_client.get(
            reverse("admin:connections_connection_change", args=[conn.pk])
        ).content.decode()
    )
    assert "Listening for changes" in page
    assert "Last synced 5 minutes ago by jonas" in page
    assert (
        f'href="/admin/connections/contactlink/?connection__id__exact={conn.pk}'
        '&amp;status__exact=in_sync"><strong>2</strong> in sync' in page
    )
    assert "HubSpot refused it: email is invalid" in page
    assert 'class="last-runs"' in page
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="driftsync-chart"' in page
    assert "<title>Created: 2 in 30 days</title>" in page


def test_the_add_page_has_no_health(admin_client):
    page = admin_client.get(reverse("admin:connections_connection_add")).content.decode()
    assert 'id="health"' not in page


# ------------------------------------------------------------------ timeline


def test_a_contact_link_page_shows_its_timeline_field_by_field_newest_first(admin_client, conn):
    link = ContactLink.objects.create(connection=conn, id_a="1", id_b="c1", email="ann@x.io")
    first = run_on(conn, NOW - dt.timedelta(days=1))
    second = run_on(conn, NOW)
    SyncEvent.objects.create(
        run=first,
        link=link,
        email="ann@x.io",
        side="b",
        action="created",
        created_at=NOW - dt.timedelta(days=1),
        changes=[{"field": "given_name", "old": None, "new": "Ann"}],
        reason="new in HubSpot",
    )
    SyncEvent.objects.create(
        run=second,
        link=link,
        email="ann@x.io",
        side="a",
        action="updated",
        created_at=NOW,
        changes=[{"field": "phone", "old": "+1 555 0100", "new": "+1 555 0199"}],
        reason="changed in Google Contacts",
    )
    page = admin_client.get(
        reverse("admin:connections_contactlink_change", args=[link.pk])
    ).content.decode()
    timeline = page[page.index('<table class="timeline">') :]
    updated, created = timeline.index("event-updated"), timeline.index("event-created")
    assert updated < created  # newest first
    assert f"run #{second.pk}</a>" in timeline
    assert "HubSpot" in timeline
    assert "Google Contacts" in timeline
    assert "changed in Google Contacts" in timeline
    assert "<td>phone</td><td>+1 555 0100</td><td>→</td><td>+1 555 0199</td>" in timeline
    assert "<td>given_name</td><td></td><td>→</td><td>Ann</td>" in timeline
