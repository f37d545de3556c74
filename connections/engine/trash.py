"""Deletions: trash tags are state on the binding until they land.

driftsync never deletes: a contact deleted on one side gets a tag on its
counterpart. The binding is marked deleted (never synced again) in the same
commit that marks its tag pending (``ContactLink.trash_pending``: the side
that gets it), so a tag is never lost between the two. The binding counts as
done only once the tag has landed.

The tags wait for the run's end, with those earlier runs left pending. A run
whose reads partly failed, or that would tag more than
``DRIFTSYNC_MAX_TRASH_SHARE`` of the connection's contacts at once, holds them
(vdirsyncer's rule: one side suddenly looking empty is no reason to propagate
a mass delete); held tags go out on a later run once the limit is raised, or
once a person confirms them in the admin ("Send the held trash tags"). A tag
the app refused is retried on later runs with backoff, like a failing contact.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from connectors.base import AuthError, ConfigError, Connector, ConnectorError, NotFound

from ..models import Connection, ContactLink, SyncEvent
from .apply import contact_write
from .batch import Counters, Pending
from .context import A, B, Context
from .record import Events, retry_delay
from .state import Outcome, SideWrite, has_tag
from .writer import Writer

WAITING = "waiting for the end of the run"
GUARD = "held by the mass-deletion guard"


@dataclass
class HeldTag:
    link: ContactLink
    side: str  # the side that gets the tag
    write: SideWrite | None  # None: left pending by an earlier run, built when sent
    reason: str  # the "trashed" event's reason
    new: bool  # decided in this run


def pending_text(link: ContactLink) -> str:
    """How the admin shows a pending tag ("" when none)."""
    if not link.trash_pending:
        return ""
    text = f"trash tag pending: {link.trash_reason or WAITING}"
    if link.trash_confirmed:
        text += " (confirmed: sent on the next run)"
    elif link.trash_retry_after:
        when = timezone.localtime(link.trash_retry_after).strftime("%Y-%m-%d %H:%M")
        text += f"; retried after {when}"
    return text


class TrashBin:
    def __init__(self) -> None:
        self.held: list[HeldTag] = []

    def hold(self, pending: list[Pending]) -> None:
        """Take the trash-tag writes of deleted pairs out of their plans, and
        mark each binding's tag pending: it is saved with the binding."""
        for item in pending:
            if item.plan.outcome != Outcome.DELETED or item.link is None:
                continue
            reason = next((e.reason for e in item.plan.events if e.action == "trashed"), "")
            for side, write in list(item.plan.writes.items()):
                del item.plan.writes[side]
                link = item.link
                link.trash_pending = side
                link.trash_reason = WAITING
                link.trash_attempts = 0
                link.trash_retry_after = None
                link.trash_confirmed = False
                self.held.append(HeldTag(link, side, write, reason, new=True))

    def left_pending(self, conn: Connection) -> list[HeldTag]:
        """Tags earlier runs left pending that are due now."""
        mine = {t.link.pk for t in self.held}
        links = (
            ContactLink.objects.filter(connection=conn)
            .exclude(trash_pending="")
            .filter(Q(trash_retry_after__isnull=True) | Q(trash_retry_after__lte=timezone.now()))
            .exclude(pk__in=mine)
            .order_by("pk")[:1000]
        )
        return [HeldTag(link, link.trash_pending, None, "", new=False) for link in links]

    def withheld_because(self, conn: Connection, count: int, reads_complete: bool) -> str:
        """Why ``count`` tags must not be sent, or "" when they may."""
        total = ContactLink.objects.filter(connection=conn).count() or 1
        limit = settings.DRIFTSYNC_MAX_TRASH_SHARE
        if not reads_complete:
            return "the run's reads were incomplete"
        if count > 1 and count / total > limit:
            return (
                f"it would tag {count} of {total} contacts at once (more than "
                f"{limit:.0%}); check the other app, then raise DRIFTSYNC_MAX_TRASH_SHARE "
                "or send them from Contact links (“Send the held trash tags”)"
            )
        return ""

    def finish(
        self,
        conn: Connection,
        ctx: Context,
        connectors: dict[str, Connector],
        writer: Writer,
        events: Events,
        counters: Counters,
        *,
        reads_complete: bool,
    ) -> str:
        """Send the pending tags (or hold them); a warning for the run, or ""."""
        earlier = self.left_pending(conn)
        tags = self.held + earlier
        if not tags:
            return ""
        out: list[SyncEvent] = []
        warning = ""
        unconfirmed = [t for t in tags if not t.link.trash_confirmed]
        why = self.withheld_because(conn, len(unconfirmed), reads_complete)
        if why:
            reason = f"{GUARD}: {why}" if reads_complete else f"held back: {why}"
            for tag in unconfirmed:
                tag.link.trash_reason = reason
                tag.link.trash_retry_after = None
                if tag.new:
                    out.append(events.new(tag.link, tag.side, "skipped", f"trash tag {reason}"))
            tags = [t for t in tags if t.link.trash_confirmed]
            warning = f"{len(unconfirmed)} trash tag(s) were not sent: {why}."
        try:
            for side in (A, B):
                batch = [t for t in tags if t.side == side]
                if batch:
                    self.send(side, batch, ctx, connectors[side], writer, events, counters, out)
        finally:
            writer.save_trash_state([t.link for t in self.held + earlier])
            SyncEvent.objects.bulk_create(out)
        return warning

    def send(
        self,
        side: str,
        batch: list[HeldTag],
        ctx: Context,
        connector: Connector,
        writer: Writer,
        events: Events,
        counters: Counters,
        out: list[SyncEvent],
    ) -> None:
        options = ctx.options
        tagged = f"“{options.trash_tag}” for review"
        try:
            self.build_writes(side, batch, ctx, connector, events, counters, out)
            batch = [t for t in batch if t.write is not None]
            if not batch:
                return
            writes = [
                contact_write(t.write, i, versioned=False)
                for i, t in enumerate(batch)
                if t.write is not None
            ]
            results = {r.ref: r for r in writer.write_contacts(connector, writes)}
        except (AuthError, ConfigError) as exc:
            for tag in batch:
                self.refused(tag, options.name(side), exc)
            raise
        except ConnectorError as exc:
            for tag in batch:
                self.refused(tag, options.name(side), exc)
                counters[side][Outcome.FAILED] += 1
                out.append(events.new(tag.link, side, "failed", f"trash tag refused: {exc}"))
            return
        for i, tag in enumerate(batch):
            result = results.get(i)
            if result is not None and isinstance(result.error, NotFound):
                self.gone(tag, side, events, out)
            elif result is not None and result.error is not None:
                self.refused(tag, options.name(side), result.error)
                counters[side][Outcome.FAILED] += 1
                reason = f"trash tag refused: {result.error.message}"
                out.append(events.new(tag.link, side, "failed", reason))
            else:
                self.landed(tag)
                counters[side]["trashed"] += 1
                why = tag.reason or f"{tag.link.status_reason} → tagged {tagged}"
                out.append(events.new(tag.link, side, "trashed", why))

    def build_writes(
        self,
        side: str,
        batch: list[HeldTag],
        ctx: Context,
        connector: Connector,
        events: Events,
        counters: Counters,
        out: list[SyncEvent],
    ) -> None:
        """Earlier runs' tags: the contact to tag, read again (it may carry
        the tag already, or be gone too)."""
        old = [t for t in batch if t.write is None]
        if not old:
            return
        ids = [t.link.remote_id(side) or "" for t in old]
        found = connector.get_contacts([i for i in ids if i])
        tag_name = ctx.options.trash_tag
        for tag, cid in zip(old, ids, strict=True):
            contact = found.get(cid) if cid else None
            if contact is None:
                self.gone(tag, side, events, out)
            elif has_tag(contact.tags, tag_name):
                self.landed(tag)
                counters[side]["trashed"] += 1
                out.append(events.new(tag.link, side, "trashed", "the trash tag is there"))
            else:
                tag.write = SideWrite(
                    side, cid, tag.link.email or None, add_tags={tag_name}, current=contact
                )

    @staticmethod
    def landed(tag: HeldTag) -> None:
        link = tag.link
        link.trash_pending = ""
        link.trash_reason = ""
        link.trash_attempts = 0
        link.trash_retry_after = None
        link.trash_confirmed = False
        tag.write = None

    def gone(self, tag: HeldTag, side: str, events: Events, out: list[SyncEvent]) -> None:
        """The contact to tag is gone too: nothing left to tag."""
        self.landed(tag)
        why = "trash tag not needed: the contact is gone on this side too"
        out.append(events.new(tag.link, side, "skipped", why))

    @staticmethod
    def refused(tag: HeldTag, app: str, error: ConnectorError) -> None:
        link = tag.link
        link.trash_attempts = (link.trash_attempts or 0) + 1
        link.trash_retry_after = timezone.now() + retry_delay(link.trash_attempts)
        link.trash_reason = f"{app} refused ({error.message})"
        tag.write = None
