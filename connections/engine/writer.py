"""Where a run's decisions go: ``LiveWriter`` sends them to the apps and the
database; ``DryRunWriter`` writes nothing and keeps what it would have sent.

Every stage decides the same way in both modes; only the writer differs,
so a dry run shows exactly what the live run would do.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from django.db import IntegrityError, transaction
from django.utils import timezone

from connectors.base import Connector, ContactWrite, WriteResult, normalize_email

from ..locking import ClaimLost
from ..models import Account, Connection, ContactLink, LinkStatus, WebhookEvent
from . import bulk, storable

if TYPE_CHECKING:
    from ..locking import Claim
    from .batch import Duplicate
    from .read import EmailChange

EMAIL_MAX = ContactLink._meta.get_field("email").max_length or 320
#: a deletion's pending trash tag (``trash``)
TRASH_FIELDS = (
    "trash_pending",
    "trash_reason",
    "trash_attempts",
    "trash_retry_after",
    "trash_confirmed",
)
LINK_FIELDS = (
    "id_a",
    "id_b",
    "email",
    "base_a",
    "base_b",
    "rule_tags",
    "status",
    "status_reason",
    "unsubscribed_on",
    *TRASH_FIELDS,
    "failure_count",
    "retry_after",
    "version_a",
    "version_b",
    "last_synced_at",
    "first_synced_at",
    "updated_at",
)


class Writer(Protocol):
    #: recorded on the SyncRun
    dry_run: bool
    #: keep a "matched" event per contact even in a full sync (a dry run is read
    #: for them; in a live initial sync of 100,000 contacts they are noise)
    reports_matches: bool

    def write_contacts(self, connector: Connector, writes: list[ContactWrite]) -> list[WriteResult]:
        """Results for the writes it sent (none when it sent nothing)."""
        ...

    def start_full_sync(self, conn: Connection, sides: list[str]) -> None: ...

    def follow_email_changes(self, conn: Connection, changes: Iterable[EmailChange]) -> None: ...

    def rebind(self, link: ContactLink, side: str, new_id: str) -> None:
        """Move ``link`` on ``side`` to the contact's new id (its old id changed)."""
        ...

    def fence(self) -> None:
        """Inside a commit: refuse it when this run no longer holds its claim."""
        ...

    def bind_duplicate(self, conn: Connection, dup: Duplicate) -> tuple[bool, ContactLink | None]:
        """Mark the duplicate's binding; (whether to report it, the binding)."""
        ...

    def save_links(self, created: list[ContactLink], changed: list[ContactLink]) -> None: ...

    def commit_cursor(self, conn: Connection, side: str, cursor: str | None) -> None: ...

    def save_trash_state(self, links: list[ContactLink]) -> None:
        """Where each link's trash tag stands (sent, held, refused)."""
        ...

    def follow_up(self, conn: Connection, when: dt.datetime) -> None:
        """Run the connection again at ``when`` (inbox deliveries not yet settled)."""
        ...

    def mark_inbox_processed(self, account: Account, upto: int) -> None: ...

    def finish_sync(self, conn: Connection, user: Any, *, full: bool, now: dt.datetime) -> None: ...


class LiveWriter:
    dry_run = False
    reports_matches = False

    def __init__(self, claim: Claim | None = None) -> None:
        #: the connection's claim (``connections.locking``); None when the
        #: caller holds no claim (tests, the benchmark)
        self.claim = claim

    def fence(self) -> None:
        if self.claim is not None:
            self.claim.fence()

    def write_contacts(self, connector: Connector, writes: list[ContactWrite]) -> list[WriteResult]:
        return connector.write_contacts(writes)

    def start_full_sync(self, conn: Connection, sides: list[str]) -> None:
        """Forget the listable sides' cursors: the next reads start from scratch."""
        updates: dict[str, Any] = {f"cursor_{side}": "" for side in sides}
        updates["needs_full_sync"] = True
        updates["full_sync_started"] = True
        Connection.objects.filter(pk=conn.pk).update(**updates)
        for key, value in updates.items():
            setattr(conn, key, value)

    def follow_email_changes(self, conn: Connection, changes: Iterable[EmailChange]) -> None:
        """Move each binding to its contact's new id, once per delivery: the
        delivery is marked processed with what was done, so a replay or a
        stale delivery changes nothing and never breaks a binding."""
        for change in changes:
            note = follow_email_change(conn, change)
            if change.event_id is not None:
                WebhookEvent.objects.filter(pk=change.event_id).update(
                    status=WebhookEvent.Status.PROCESSED,
                    processed_at=timezone.now(),
                    error=storable.text(note),
                )

    def rebind(self, link: ContactLink, side: str, new_id: str) -> None:
        id_field = f"id_{side}"
        ContactLink.objects.filter(pk=link.pk, **{id_field: getattr(link, id_field)}).update(
            **{id_field: new_id}, updated_at=timezone.now()
        )

    def bind_duplicate(self, conn: Connection, dup: Duplicate) -> tuple[bool, ContactLink | None]:
        link = dup.link
        id_field = f"id_{dup.side}"
        if link is None:
            link = ContactLink.objects.filter(connection=conn, **{id_field: dup.contact.id}).first()
        if link is None:
            link = ContactLink(connection=conn, **{id_field: dup.contact.id})
        if link.status == LinkStatus.DUPLICATE and link.status_reason == dup.reason:
            return False, link  # reported already
        link.email = storable.cut(normalize_email(dup.contact.email), EMAIL_MAX)
        link.status = LinkStatus.DUPLICATE
        link.status_reason = storable.text(dup.reason)
        link.save()
        return True, link

    def save_links(self, created: list[ContactLink], changed: list[ContactLink]) -> None:
        bulk.insert(created)
        save_links(changed, LINK_FIELDS)

    def commit_cursor(self, conn: Connection, side: str, cursor: str | None) -> None:
        if cursor is None or cursor == conn.cursor(side):
            return
        rows = Connection.objects.filter(pk=conn.pk)
        if self.claim is not None:
            # fenced: a worker that lost its claim does not move the new run's cursor
            rows = rows.filter(running_since=self.claim.since)
        if not rows.update(**{f"cursor_{side}": cursor}) and self.claim is not None:
            raise ClaimLost(f"connection {conn.pk}: another worker took over the run")
        setattr(conn, f"cursor_{side}", cursor)

    def save_trash_state(self, links: list[ContactLink]) -> None:
        save_links(links, (*TRASH_FIELDS, "updated_at"))

    def follow_up(self, conn: Connection, when: dt.datetime) -> None:
        from .. import actions

        actions.schedule_follow_up(conn, when)

    def mark_inbox_processed(self, account: Account, upto: int) -> None:
        WebhookEvent.objects.filter(
            account=account, pk__lte=upto, status=WebhookEvent.Status.RECEIVED
        ).update(status=WebhookEvent.Status.PROCESSED, processed_at=timezone.now())

    def finish_sync(self, conn: Connection, user: Any, *, full: bool, now: dt.datetime) -> None:
        updates: dict[str, Any] = {"last_synced_at": now, "last_synced_by": user}
        Connection.objects.filter(pk=conn.pk).update(**updates)
        if full:
            # unless a new full sync was requested while this one ran
            Connection.objects.filter(pk=conn.pk, full_sync_started=True).update(
                needs_full_sync=False, full_sync_started=False
            )


class DryRunWriter:
    """Writes nothing; ``would_write`` lists the writes a live run would send."""

    dry_run = True
    reports_matches = True

    def __init__(self) -> None:
        self.would_write: list[ContactWrite] = []

    def write_contacts(self, connector: Connector, writes: list[ContactWrite]) -> list[WriteResult]:
        self.would_write.extend(writes)
        return []

    def start_full_sync(self, conn: Connection, sides: list[str]) -> None:
        pass

    def fence(self) -> None:
        pass  # writes nothing, so it can overwrite nothing

    def follow_email_changes(self, conn: Connection, changes: Iterable[EmailChange]) -> None:
        pass  # not even read: the changes are left for the live run

    def rebind(self, link: ContactLink, side: str, new_id: str) -> None:
        pass  # the run goes on as if moved; the binding stays for the live run

    def bind_duplicate(self, conn: Connection, dup: Duplicate) -> tuple[bool, ContactLink | None]:
        return True, None

    def save_links(self, created: list[ContactLink], changed: list[ContactLink]) -> None:
        pass

    def commit_cursor(self, conn: Connection, side: str, cursor: str | None) -> None:
        pass

    def mark_inbox_processed(self, account: Account, upto: int) -> None:
        pass

    def save_trash_state(self, links: list[ContactLink]) -> None:
        pass

    def follow_up(self, conn: Connection, when: dt.datetime) -> None:
        pass

    def finish_sync(self, conn: Connection, user: Any, *, full: bool, now: dt.datetime) -> None:
        pass


def follow_email_change(conn: Connection, change: EmailChange) -> str:
    """Move the binding of ``change.old_id`` to ``change.new_id`` unless the new
    member is gone or already bound to another contact; what happened, for
    the delivery's row (and the binding's reason when it cannot move)."""
    id_field = f"id_{change.side}"
    app = conn.account(change.side).get_connector_display()
    link = ContactLink.objects.filter(connection=conn, **{id_field: change.old_id}).first()
    if link is None:
        return f"No binding holds {change.old_id}: followed already, or never synced."
    if not change.found:
        return (
            f"{app} has no contact {change.new_id} (a late or replayed delivery): "
            f"the binding stays with {change.old_id}."
        )
    if change.new_id == change.old_id:
        return f"The contact is at {change.old_id} again: the binding stays."
    holder = (
        ContactLink.objects.filter(connection=conn, **{id_field: change.new_id})
        .exclude(pk=link.pk)
        .first()
    )
    if holder is not None:
        reason = (
            f"{app} reports this contact's email changed to {change.email} ({change.new_id}), "
            f"but that contact is already linked (to {holder}); both links are kept as they "
            f"were. Merge the two contacts in {app}, then unlink one."
        )
        link.status, link.status_reason = LinkStatus.DUPLICATE, storable.text(reason)
        link.save(update_fields=["status", "status_reason", "updated_at"])
        return reason
    try:
        with transaction.atomic():
            ContactLink.objects.filter(pk=link.pk).update(
                **{id_field: change.new_id}, email=storable.cut(change.email, EMAIL_MAX)
            )
    except IntegrityError:  # bound meanwhile: the next run sees the holder
        return f"{change.new_id} was bound meanwhile: the binding stays with {change.old_id}."
    return f"The binding moved from {change.old_id} to {change.new_id}."


def save_links(links: list[ContactLink], fields: tuple[str, ...]) -> None:
    """UPDATE many links in one executemany (``updated_at`` among ``fields``
    takes now).

    Django's bulk_update builds one CASE per field over the whole batch, which
    costs seconds per thousand rows on SQLite; one prepared UPDATE per row is
    a hundred times faster and the same on PostgreSQL.
    """
    bulk.update(links, fields)
