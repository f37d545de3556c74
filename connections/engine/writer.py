"""Where a run's decisions go: ``LiveWriter`` sends them to the apps and the
database; ``DryRunWriter`` writes nothing and keeps what it would have sent.

Every stage decides the same way in both modes; only the writer differs,
so a dry run shows exactly what the live run would do.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from django.db import connections
from django.utils import timezone

from connectors.base import Connector, ContactWrite, WriteResult, normalize_email

from ..locking import ClaimLost
from ..models import Account, Connection, ContactLink, LinkStatus, WebhookEvent

if TYPE_CHECKING:
    from ..locking import Claim
    from .batch import Duplicate
    from .read import EmailChange

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

    def fence(self) -> None:
        """Inside a commit: refuse it when this run no longer holds its claim."""
        ...

    def bind_duplicate(self, conn: Connection, dup: Duplicate) -> tuple[bool, ContactLink | None]:
        """Mark the duplicate's binding; (whether to report it, the binding)."""
        ...

    def save_links(self, created: list[ContactLink], changed: list[ContactLink]) -> None: ...

    def commit_cursor(self, conn: Connection, side: str, cursor: str | None) -> None: ...

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
        for change in changes:
            id_field = f"id_{change.side}"
            ContactLink.objects.filter(connection=conn, **{id_field: change.old_id}).exclude(
                **{id_field: change.new_id}
            ).update(**{id_field: change.new_id}, email=change.email)

    def bind_duplicate(self, conn: Connection, dup: Duplicate) -> tuple[bool, ContactLink | None]:
        link = dup.link
        id_field = f"id_{dup.side}"
        if link is None:
            link = ContactLink.objects.filter(connection=conn, **{id_field: dup.contact.id}).first()
        if link is None:
            link = ContactLink(connection=conn, **{id_field: dup.contact.id})
        if link.status == LinkStatus.DUPLICATE and link.status_reason == dup.reason:
            return False, link  # reported already
        link.email = normalize_email(dup.contact.email)
        link.status = LinkStatus.DUPLICATE
        link.status_reason = dup.reason
        link.save()
        return True, link

    def save_links(self, created: list[ContactLink], changed: list[ContactLink]) -> None:
        if created:
            ContactLink.objects.bulk_create(created, batch_size=500)
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

    def bind_duplicate(self, conn: Connection, dup: Duplicate) -> tuple[bool, ContactLink | None]:
        return True, None

    def save_links(self, created: list[ContactLink], changed: list[ContactLink]) -> None:
        pass

    def commit_cursor(self, conn: Connection, side: str, cursor: str | None) -> None:
        pass

    def mark_inbox_processed(self, account: Account, upto: int) -> None:
        pass

    def finish_sync(self, conn: Connection, user: Any, *, full: bool, now: dt.datetime) -> None:
        pass


def save_links(links: list[ContactLink], fields: tuple[str, ...]) -> None:
    """UPDATE many links in one executemany.

    Django's bulk_update builds one CASE per field over the whole batch, which
    costs seconds per thousand rows on SQLite; one prepared UPDATE per row is
    a hundred times faster and the same on PostgreSQL.
    """
    if not links:
        return
    now = timezone.now()
    meta = ContactLink._meta
    columns = [meta.get_field(name) for name in fields]
    conn = connections[ContactLink.objects.db]
    quote = conn.ops.quote_name
    sql = "UPDATE {} SET {} WHERE {} = %s".format(
        quote(meta.db_table),
        ", ".join(f"{quote(f.column)} = %s" for f in columns),
        quote(meta.pk.column),
    )
    rows = []
    for link in links:
        link.updated_at = now
        rows.append(
            [f.get_db_prep_save(getattr(link, f.attname), conn) for f in columns] + [link.pk]
        )
    with conn.cursor() as cursor:
        cursor.executemany(sql, rows)
