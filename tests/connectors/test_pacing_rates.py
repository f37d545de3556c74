"""The pace each bucket keeps, on a simulated clock: never over the app's
limit in any window, and not far under it either (HubSpot search allows 4
requests a second; pacing it at one a second made every run wait)."""

from __future__ import annotations

import pytest

from connectors import pacing


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(
    ("limit", "window", "share"),
    # a large bucket leases tokens ahead to spare the shared store (a twentieth
    # of the limit at a time): 63 % of the limit over a long run (with a tenth
    # at a time it paced HubSpot at 5.5 requests a second of its 10)
    [(4, 1.0, 2 / 3), (100, 10.0, 0.63), (50, 10.0, 0.63), (90, 60.0, 0.63)],
)
def test_a_bucket_stays_under_its_limit_and_uses_most_of_it(monkeypatch, limit, window, share):
    clock = Clock()
    monkeypatch.setattr(pacing.time, "monotonic", clock.monotonic)
    bucket = pacing.Pacer(f"test:{limit}:{window}", limit, window, shared=False)
    monkeypatch.setattr(pacing, "_memory", pacing.MemoryStore())
    times = []
    for _ in range(limit * 6):
        bucket.acquire(sleep=clock.sleep)
        times.append(clock.now)
    # at most ``limit`` in any window (a request at t and one at t + window are in two)
    for i, start in enumerate(times):
        assert sum(1 for t in times[i:] if t < start + window) <= limit
    # and a fair share of it over the long run
    span = times[-1] - times[0]
    assert (len(times) - 1) / span >= limit / window * share


@pytest.mark.parametrize("count", [2, 8])
@pytest.mark.parametrize(("limit", "window"), [(100, 10.0), (50, 10.0), (90, 60.0)])
def test_workers_sharing_a_bucket_stay_under_its_limit(monkeypatch, limit, window, count):
    """Each worker holds its own lease: however many, they fit under the limit."""
    clock = Clock()
    monkeypatch.setattr(pacing.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(pacing, "_memory", pacing.MemoryStore())
    workers = [pacing.Pacer(f"test2:{limit}", limit, window, shared=False) for _ in range(count)]
    times = []
    for n in range(limit * 6):
        # turn about: each worker holds part of a lease while the others spend
        workers[n % count].acquire(sleep=clock.sleep)
        times.append(clock.now)
    for i, start in enumerate(times):
        assert sum(1 for t in times[i:] if t < start + window) <= limit
