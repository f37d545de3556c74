"""The garbage collector during a run.

A page of a run keeps thousands of objects alive at once (its contacts, plans,
bindings, events) and frees them together when it is recorded; none of them
forms a cycle, but with CPython's default threshold (a young collection every
700 allocations) they are scanned again and again and promoted to the old
generation, whose growth then sets off full collections of the whole heap.
At 10,000 contacts per side that was about a third of the engine's CPU time at
latency 0 (1.6 s of 4.5 s; docs/benchmark.md, "Engine time at latency 0").
During a run, young collections come every ``THRESHOLD`` allocations instead:
reference counting still frees everything as soon as it is dropped, cycles
are still collected, only less often; the process's own setting comes back
when the last run in it ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: allocations (less deallocations) between two young collections during a run
THRESHOLD = 10_000

_lock = threading.Lock()
_runs = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect less often while the block runs (runs in threads of one process
    share the setting: the first in sets it, the last out puts it back)."""
    global _runs, _saved
    with _lock:
        if _runs == 0:
            _saved = gc.get_threshold()
            if 0 < _saved[0] < THRESHOLD:  # 0: collection is off, leave it off
                gc.set_threshold(THRESHOLD, *_saved[1:])
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
