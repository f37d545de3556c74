"""Applying: the planned writes of a batch, per side, in the connector's batches.

The connectors send them in the largest batches their app allows; each
result comes back to its pair by ``ref``. Recording (``record``) turns the
results into the bindings' new state.
"""

from __future__ import annotations

from connectors.base import Connector, ContactWrite

from .batch import Pending
from .context import A, B
from .state import SideWrite
from .writer import Writer


def contact_write(w: SideWrite, ref: int, *, versioned: bool = True) -> ContactWrite:
    """The connector's write for a planned one. ``versioned``: send the
    version last read, for apps that refuse a write over a newer change."""
    return ContactWrite(
        id=w.id,
        email=w.email,
        fields=dict(w.fields),
        add_tags=frozenset(w.add_tags),
        remove_tags=frozenset(w.remove_tags),
        version=w.current.version if versioned and w.current else None,
        current=w.current,
        ref=ref,
    )


def apply_writes(pending: list[Pending], connectors: dict[str, Connector], writer: Writer) -> None:
    """Send every planned write; the results land in each item's ``results``."""
    for side in (A, B):
        writes: list[ContactWrite] = []
        owners: list[Pending] = []
        for item in pending:
            w = item.plan.writes.get(side)
            if w is None:
                continue
            writes.append(contact_write(w, len(owners)))
            owners.append(item)
        if not writes:
            continue
        for result in writer.write_contacts(connectors[side], writes):
            owners[result.ref].results[side] = result
