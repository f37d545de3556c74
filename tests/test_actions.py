"""connections.actions: every state change in one place, logged, with the
schedule following the state."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django_q.models import Schedule

from connections import actions
from connections.models import Account, Connection
from connections.schedules import schedule_name

pytestmark = pytest.mark.django_db


def history(obj) -> list[str]:
    return [
        e.change_message
        for e in LogEntry.objects.filter(object_id=str(obj.pk)).order_by("pk")
        if e.content_type.model == obj._meta.model_name
    ]


def has_schedule(conn: Connection) -> bool:
    return Schedule.objects.filter(name=schedule_name(conn.pk)).exists()


@pytest.fixture
def boss(db) -> User:
    return User.objects.create_superuser("boss", password="boss-password-1")


def test_pause_and_resume_follow_the_schedule_and_log_the_person(make_connection, boss):
    conn = make_connection()
    assert has_schedule(conn)
    assert actions.pause(conn, user=boss) is True
    assert not has_schedule(conn)
    assert actions.pause(conn, user=boss) is False  # already paused: nothing logged twice
    conn.refresh_from_db()
    assert (conn.state, conn.state_reason) == (Connection.State.PAUSED, "Paused by boss.")
    assert actions.resume(conn, user=boss) is True
    assert has_schedule(conn)
    assert history(conn) == [
        "State changed from active to paused.",
        "State changed from paused to active.",
    ]
    assert {e.user_id for e in LogEntry.objects.all()} == {boss.pk}


def test_driftsync_marks_needs_reauth_once_with_its_reason(make_connection, boss):
    conn = make_connection()
    assert actions.mark_needs_reauth(conn, "HubSpot: token revoked") is True
    assert actions.mark_needs_reauth(conn, "HubSpot: token revoked") is False
    conn.refresh_from_db()
    assert conn.state == Connection.State.NEEDS_REAUTH
    assert not has_schedule(conn)
    assert history(conn) == [
        "State changed from active to needs re-authorization. HubSpot: token revoked (by driftsync)"
    ]


def test_mark_error_cuts_a_long_reason(make_connection):
    conn = make_connection()
    actions.mark_error(conn, "x" * 5000)
    conn.refresh_from_db()
    assert conn.state == Connection.State.ERROR
    assert len(conn.state_reason) == actions.REASON_LIMIT


def test_an_account_test_result_is_recorded_and_a_change_is_in_its_history(make_account, boss):
    account = make_account("hubspot", status=Account.Status.OK)
    assert actions.record_account_check(account, Account.Status.OK, user=boss) is False
    assert history(account) == []  # still working: nothing to tell
    assert actions.record_account_check(account, "error", "HTTP 503 from api", user=boss)
    account.refresh_from_db()
    assert (account.status, account.status_reason) == ("error", "HTTP 503 from api")
    assert actions.record_account_check(account, Account.Status.OK, remote_id="portal-9")
    account.refresh_from_db()
    assert (account.status, account.status_reason, account.remote_id) == ("ok", "", "portal-9")
    assert history(account) == [
        "Test failed: HTTP 503 from api",
        "Tested: it works. (by driftsync)",
    ]
    with pytest.raises(ValueError, match="not a test result"):
        actions.record_account_check(account, Account.Status.UNCHECKED)


def test_a_pasted_token_makes_a_tested_account_unchecked(make_account):
    account = make_account("hubspot", status=Account.Status.OK)
    actions.credentials_replaced(account)
    assert (account.status, account.status_reason) == (Account.Status.UNCHECKED, "")


def test_account_needs_reauth_is_recorded_on_the_account(make_account, boss):
    account = make_account("google")
    assert actions.mark_account_needs_reauth(account, "invalid_grant") is True
    account.refresh_from_db()
    assert (account.status, account.status_reason) == (Account.Status.NEEDS_REAUTH, "invalid_grant")
    assert history(account) == ["Needs re-authorization: invalid_grant (by driftsync)"]
