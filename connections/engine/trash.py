"""Deletions: trash tags held until the run's end, then sent unless the
mass-trash guard withholds them.

driftsync never deletes: a contact deleted on one side gets a tag on its
counterpart. A run whose reads partly failed, or that would tag more than
``DRIFTSYNC_MAX_TRASH_SHARE`` of the connection's contacts at once, tags
nothing (vdirsyncer's rule: one side suddenly looking empty is no reason to
propagate a mass delete); the bindings stay marked and visible.
"""

from __future__ import annotations

from django.conf import settings

from connectors.base import Connector

from ..models import Connection, ContactLink, SyncEvent
from .apply import contact_write
from .batch import Counters, Pending
from .context import A, B
from .record import Events
from .state import Outcome, SideWrite
from .writer import Writer


class TrashBin:
    def __init__(self) -> None:
        self.held: list[tuple[str, SideWrite, Pending]] = []

    def hold(self, pending: list[Pending]) -> None:
        """Take the trash-tag writes of deleted pairs out of their plans, for ``finish``."""
        for item in pending:
            if item.plan.outcome == Outcome.DELETED:
                for side, write in list(item.plan.writes.items()):
                    self.held.append((side, write, item))
                    del item.plan.writes[side]

    def withheld_because(self, conn: Connection, reads_complete: bool) -> str:
        """Why the held tags must not be sent, or "" when they may."""
        total = ContactLink.objects.filter(connection=conn).count() or 1
        limit = settings.DRIFTSYNC_MAX_TRASH_SHARE
        if not reads_complete:
            return "the run's reads were incomplete"
        if len(self.held) > 1 and len(self.held) / total > limit:
            return (
                f"it would tag {len(self.held)} of {total} contacts at once (more than "
                f"{limit:.0%}); check the other app, then raise DRIFTSYNC_MAX_TRASH_SHARE "
                "or tag by hand"
            )
        return ""

    def finish(
        self,
        conn: Connection,
        connectors: dict[str, Connector],
        writer: Writer,
        events: Events,
        counters: Counters,
        *,
        reads_complete: bool,
    ) -> str:
        """Send the held tags (or withhold them all); a warning for the run, or ""."""
        if not self.held:
            return ""
        out: list[SyncEvent] = []
        why = self.withheld_because(conn, reads_complete)
        if why:
            for side, _write, item in self.held:
                out.append(events.new(item.link, side, "skipped", f"trash tag withheld: {why}"))
            SyncEvent.objects.bulk_create(out)
            return f"Nothing was tagged as deleted: {why}."
        for side in (A, B):
            batch = [(w, item) for s, w, item in self.held if s == side]
            if not batch:
                continue
            writes = [contact_write(w, i, versioned=False) for i, (w, _item) in enumerate(batch)]
            results = {r.ref: r for r in writer.write_contacts(connectors[side], writes)}
            for i, (_w, item) in enumerate(batch):
                result = results.get(i)
                for ev in item.plan.events:
                    if ev.action != "trashed":
                        continue
                    if result is not None and result.error is not None:
                        counters[side][Outcome.FAILED] += 1
                        reason = f"trash tag refused: {result.error.message}"
                        out.append(events.new(item.link, side, "failed", reason))
                    else:
                        counters[side]["trashed"] += 1
                        out.append(events.new(item.link, side, "trashed", ev.reason))
        SyncEvent.objects.bulk_create(out)
        return ""
