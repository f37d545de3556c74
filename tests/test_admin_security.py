"""Staff permissions in the admin pages of issue 11: a dry run's task result
only for its own connection and only to who may change it (finding 5); the
webhook inbox deletable by a superuser only, with its retention shown
(finding 3)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_q.models import Task

from connections.models import Connection, WebhookEvent

pytestmark = pytest.mark.django_db

TRACEBACK = "Traceback (most recent call last): secret-detail-0xDEAD"


def task_for(conn: Connection, task_id: str, *, dry_run: bool = True) -> Task:
    return Task.objects.create(
        id=task_id,
        name=f"sync {conn.pk} (manual)",
        func="connections.tasks.run_sync",
        args=(conn.pk,),
        kwargs={"trigger": "manual", "user_id": None, "dry_run": dry_run, "full": False},
        started=timezone.now(),
        stopped=timezone.now(),
        success=False,
        result=TRACEBACK,
    )


def queued_url(conn: Connection, task_id: str) -> str:
    return reverse("admin:connections_connection_dry_run_queued", args=[conn.pk, task_id])


def staff(*codenames: str) -> Client:
    user = User.objects.create_user("staff-" + "-".join(codenames), is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def two(make_connection: Callable[..., Connection]) -> tuple[Connection, Connection]:
    return make_connection(name="mine"), make_connection(name="other")


def test_who_may_change_the_connection_sees_its_dry_runs_failure(two: Any) -> None:
    mine, _other = two
    task_for(mine, "a" * 32)
    page = staff("view_connection", "change_connection").get(queued_url(mine, "a" * 32))
    assert page.status_code == 200
    assert TRACEBACK in page.content.decode()


def test_a_view_only_user_gets_a_404_for_a_dry_runs_task(view_only_user: User, two: Any) -> None:
    mine, _other = two
    task_for(mine, "a" * 32)
    client = Client()
    client.force_login(view_only_user)
    page = client.get(queued_url(mine, "a" * 32))
    assert page.status_code == 404
    assert TRACEBACK not in page.content.decode()


@pytest.mark.parametrize(
    "make_task",
    [
        lambda mine, other: task_for(other, "b" * 32),  # another connection's dry run
        lambda mine, other: task_for(mine, "b" * 32, dry_run=False),  # not a dry run
        lambda mine, other: Task.objects.create(  # not a sync at all
            id="b" * 32,
            name="something",
            func="connections.webhooks.purge_inbox",
            args=(mine.pk,),
            kwargs={"dry_run": True},
            started=timezone.now(),
            stopped=timezone.now(),
            success=False,
            result=TRACEBACK,
        ),
    ],
    ids=["other-connection", "real-run", "other-function"],
)
def test_a_task_that_is_not_this_connections_dry_run_is_a_404(
    two: Any, make_task: Callable[..., Task]
) -> None:
    mine, other = two
    make_task(mine, other)
    page = staff("view_connection", "change_connection").get(queued_url(mine, "b" * 32))
    assert page.status_code == 404
    assert TRACEBACK not in page.content.decode()


def test_a_task_looked_up_by_name_is_not_found(two: Any) -> None:
    """django-q2's ``Task.get_task`` also matches names; the page looks up ids only."""
    mine, _other = two
    task_for(mine, "a" * 32)
    page = staff("view_connection", "change_connection").get(
        queued_url(mine, f"sync {mine.pk} (manual)")
    )
    assert page.status_code == 200
    assert TRACEBACK not in page.content.decode()  # waiting: no such task yet


# ------------------------------------------------------- the webhook inbox


def inbox_row() -> WebhookEvent:
    return WebhookEvent.objects.create(source="drift", status="rejected", error="bad token")


def test_a_superuser_may_delete_inbox_rows(admin_client: Client) -> None:
    row = inbox_row()
    url = reverse("admin:connections_webhookevent_delete", args=[row.pk])
    assert admin_client.get(url).status_code == 200
    admin_client.post(url, {"post": "yes"})
    assert not WebhookEvent.objects.filter(pk=row.pk).exists()


def test_other_staff_may_not_delete_inbox_rows_even_with_the_permission() -> None:
    row = inbox_row()
    client = staff("view_webhookevent", "delete_webhookevent")
    url = reverse("admin:connections_webhookevent_delete", args=[row.pk])
    assert client.post(url, {"post": "yes"}).status_code == 403
    assert WebhookEvent.objects.filter(pk=row.pk).exists()


def test_the_inbox_says_how_long_it_keeps_deliveries(settings: Any) -> None:
    settings.WEBHOOK_RETENTION_DAYS = 30
    settings.WEBHOOK_REJECTED_RETENTION_DAYS = 7
    page = staff("view_webhookevent").get(reverse("admin:connections_webhookevent_changelist"))
    text = " ".join(page.content.decode().split())
    assert "Processed and ignored deliveries are kept 30 days" in text
    assert "rejected ones 7 days" in text
    assert "first 1024 characters of their body" in text
