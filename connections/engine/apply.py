"""Applying: the planned writes of a batch, per side, in the connector's batches.

The connectors send them in the largest batches their app allows; each
result comes back to its pair by ``ref``. Recording (``record``) turns the
results into the bindings' new state.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait

from connectors.base import Connector, ContactWrite, WriteResult
from connectors.http import in_thread

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
    """Send every planned write; the results land in each item's ``results``.

    The two sides' writes are independent (each side's own order — create
    before tag, a contact's writes in order — stays inside its connector
    call), so they are in flight together: side B in a worker thread."""
    per_side: dict[str, tuple[list[ContactWrite], list[Pending]]] = {}
    for side in (A, B):
        writes: list[ContactWrite] = []
        owners: list[Pending] = []
        for item in pending:
            w = item.plan.writes.get(side)
            if w is None:
                continue
            writes.append(contact_write(w, len(owners)))
            owners.append(item)
        if writes:
            per_side[side] = (writes, owners)

    def send(side: str) -> list[WriteResult]:
        return writer.write_contacts(connectors[side], per_side[side][0])

    send_in_thread = in_thread(send)  # its database connections closed after it

    answers: dict[str, list[WriteResult]] = {}
    if len(per_side) == 2:
        with ThreadPoolExecutor(max_workers=1) as pool:
            other = pool.submit(send_in_thread, B)
            try:
                answers[A] = send(A)
            except BaseException:
                wait([other])  # A's error is the one raised, as when sent in turn
                raise
            answers[B] = other.result()
    else:
        for side in per_side:
            answers[side] = send(side)
    for side, results in answers.items():
        owners = per_side[side][1]
        for result in results:
            owners[result.ref].results[side] = result
