"""The owners of a connection are mailed when it needs them (re-authorization,
an error, contacts that keep failing) — once per incident, at most once a
day — and once when it recovers; a re-authorized account resumes the
connections it stopped."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from connections import actions, alerts
from connections.models import Account, Alert, Connection, ContactLink, LinkStatus, SyncRun
from connectors.sandbox.control import SandboxControl

from .test_oauth_accounts import connect, oauth_settings, server  # noqa: F401

# the mails go on commit
pytestmark = pytest.mark.django_db(transaction=True)
State = Connection.State


@pytest.fixture
def boss(db) -> User:
    return User.objects.create_superuser("boss", "boss@example.com", "boss-password-1")


@pytest.fixture
def conn(make_connection, boss) -> Connection:
    return make_connection(name="HubSpot ↔ Google")


def test_needing_reauthorization_mails_the_superusers_once_with_the_reason_and_a_link(
    conn, mailoutbox, settings
):
    settings.PUBLIC_URL = "https://sync.example.com"
    actions.mark_needs_reauth(conn, "HubSpot refused the token (401).")
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["boss@example.com"]
    assert "HubSpot ↔ Google" in mail.subject
    assert "needs re-authorization" in mail.subject.lower()
    assert "HubSpot refused the token (401)." in mail.body
    url = "https://sync.example.com" + reverse(
        "admin:connections_connection_change", args=[conn.pk]
    )
    assert url in mail.body


def test_the_same_incident_is_not_mailed_again_within_a_day(conn, mailoutbox):
    actions.mark_error(conn, "The audience is gone.")
    actions.mark_error(conn, "The audience is still gone.")
    actions.pause(conn)
    actions.mark_error(conn, "The audience is gone again.")
    assert len(mailoutbox) == 1
    assert Alert.objects.filter(connection=conn, resolved_at__isnull=True).count() == 1


def test_a_lasting_incident_is_mailed_again_after_a_day(conn, mailoutbox):
    actions.mark_error(conn, "The audience is gone.")
    Alert.objects.update(last_mailed_at=timezone.now() - dt.timedelta(days=1, minutes=1))
    actions.mark_error(conn, "The audience is still gone.")
    assert len(mailoutbox) == 2
    assert "still gone" in mailoutbox[1].body


@pytest.mark.integration
def test_recovery_is_mailed_once(conn, mailoutbox):
    actions.mark_needs_reauth(conn, "revoked")
    actions.resume(conn)
    assert len(mailoutbox) == 2
    assert "recovered" in mailoutbox[1].subject
    alert = Alert.objects.get(connection=conn)
    assert alert.resolved_at is not None
    # back and over again within the day: the same incident, no new mails
    actions.mark_needs_reauth(conn, "revoked again")
    actions.resume(conn)
    assert len(mailoutbox) == 2
    assert Alert.objects.filter(connection=conn).count() == 1


def test_the_chosen_owners_are_mailed_instead_of_the_superusers(conn, mailoutbox):
    owner = User.objects.create_user("ops", "ops@example.com", is_staff=True)
    conn.owners.add(owner)
    actions.mark_needs_reauth(conn, "revoked")
    assert mailoutbox[0].to == ["ops@example.com"]


def test_a_refusing_mail_server_changes_nothing_else(conn, settings, mailoutbox):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", 1  # nothing listens there
    assert actions.mark_needs_reauth(conn, "revoked")
    conn.refresh_from_db()
    assert conn.state == State.NEEDS_REAUTH


def finished_run(conn: Connection) -> SyncRun:
    return SyncRun.objects.create(
        connection=conn, status=SyncRun.Status.PARTIAL, finished_at=timezone.now()
    )


def test_contacts_that_keep_failing_mail_the_owners_and_their_recovery_too(
    conn, mailoutbox, settings
):
    settings.DRIFTSYNC_ALERT_FAILURES = 3
    link = ContactLink.objects.create(
        connection=conn,
        email="ada@example.com",
        status=LinkStatus.FAILING,
        status_reason="Google refused it: the phone is invalid",
        failure_count=2,
    )
    alerts.after_run(conn, finished_run(conn))
    assert mailoutbox == []  # still within its retries
    ContactLink.objects.filter(pk=link.pk).update(failure_count=3)
    alerts.after_run(conn, finished_run(conn))
    alerts.after_run(conn, finished_run(conn))
    assert len(mailoutbox) == 1
    assert "the phone is invalid" in mailoutbox[0].body
    ContactLink.objects.filter(pk=link.pk).update(status=LinkStatus.IN_SYNC, failure_count=0)
    alerts.after_run(conn, finished_run(conn))
    assert len(mailoutbox) == 2
    assert "recovered" in mailoutbox[1].subject


# ------------------------------------------------------- account recovery


def test_a_recovered_account_resumes_the_connections_it_stopped(make_connection, make_account):
    broken, fine, other_broken = make_account(), make_account("google"), make_account("google")
    Account.objects.filter(pk=other_broken.pk).update(status=Account.Status.NEEDS_REAUTH)
    waiting = make_connection(broken, fine, state=State.NEEDS_REAUTH)
    both_broken = make_connection(broken, other_broken, state=State.NEEDS_REAUTH)
    paused = make_connection(broken, make_account("google"), state=State.PAUSED)
    resumed = actions.account_recovered(broken)
    assert resumed == [waiting]
    for c, state in [(waiting, State.ACTIVE), (both_broken, State.NEEDS_REAUTH)]:
        c.refresh_from_db()
        assert c.state == state
    paused.refresh_from_db()
    assert paused.state == State.PAUSED


def test_reauthorizing_with_oauth_resumes_the_connection(
    admin_client,
    oauth_settings,  # noqa: F811
    make_connection,
    make_account,
):
    connect(admin_client, "hubspot")
    account = Account.objects.get(connector="hubspot")
    conn = make_connection(account, make_account("google"), state=State.NEEDS_REAUTH)
    actions.mark_account_needs_reauth(account, "revoked")
    connect(admin_client, "hubspot")
    conn.refresh_from_db()
    assert conn.state == State.ACTIVE


def test_a_new_token_that_passes_test_connection_resumes_the_connection(
    admin_client,
    oauth_settings,  # noqa: F811
    server,  # noqa: F811
    make_connection,
    make_account,
):
    connect(admin_client, "hubspot")
    account = Account.objects.get(connector="hubspot")
    conn = make_connection(account, make_account("google"), state=State.NEEDS_REAUTH)
    test_url = reverse("admin:connections_account_test", args=[account.pk])
    SandboxControl.of(server, "hubspot").revoke_tokens()
    admin_client.post(test_url)
    conn.refresh_from_db()
    assert conn.state == State.NEEDS_REAUTH
    connect(admin_client, "hubspot")  # a new token
    page = admin_client.post(test_url, follow=True).content.decode()
    conn.refresh_from_db()
    assert conn.state == State.ACTIVE
    assert "Resumed" in page
