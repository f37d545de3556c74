"""The sync benchmark (``manage.py bench_sync``): throughput, request
efficiency, incremental cost and memory of the engine against the sandboxes.

One call of :func:`run_benchmark` does, in one process:

1. starts its own sandboxes on loopback (rate limits and faults off; the report
   says so: "sandbox rate limits: off"), seeds
   ``N`` contacts per side through the control API's bulk route, a share of
   them with the same email on both sides (and some of those with a field
   that differs, so the first sync has updates to make as well as creates);
2. makes two accounts and a connection with the default rules and mappings
   (unique names; removed again at the end unless ``cleanup=False``), then
   times the **initial sync** and counts its requests by endpoint, from the
   connectors' own ``HttpClient.stats``, cross-checked with what the
   sandboxes say they served; the **floor** is the fewest requests the APIs
   allow for the same work (list pages at the connector's ``page_size``, batch
   writes at its ``write_batch_size`` for the creates and updates the run
   made);
3. a settling run (the echoes of the initial sync's own writes), then ``K``
   edits spread over both sides and the timed **incremental run** (requests,
   list requests per side, database queries);
4. the same over a connection 100 times smaller, for the ratio of the two
   incremental wall times;
5. the **raw time floor**: every HTTP request of the initial sync, recorded on
   the wire, replayed by a bare ``requests.Session`` loop against a second,
   identically seeded set of sandboxes (no sync logic, no database; it does
   decode each JSON answer); ids, page tokens and etags that differ between
   the two sets of sandboxes are substituted;
6. memory: the process's peak RSS. The sandboxes run in a child process
   (``manage.py sandbox``), so this is driftsync's own memory; the RSS after
   seeding is reported too, and the engine's share is the difference.

The modules: ``world`` (sandbox process, seeding, accounts, connection),
``runs`` (one timed run, requests by kind), ``floor`` (request floors,
recording and raw replay), ``report`` (targets and the table); this one
runs the phases.

Nothing here times a test; the test checks the report's shape and that the
counted requests match the served ones.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import tempfile
import time
from typing import Any

from django.test.utils import override_settings

from connectors import registry, sandbox

from .fleet import NO_PACING
from .floor import Recorder, latency_floor, read_floor, replay, write_floor, writes_of
from .report import render, targets
from .runs import current_rss_mb, describe, peak_rss_mb, timed_run
from .world import LIMITS_NOTE, LIMITS_ON_NOTE, SIDES, World

PAIRS = ("google-mailchimp", "drift-hubspot", "hubspot-google", "google-hubspot")


def _pair(pair: str) -> tuple[str, str]:
    key_a, _, key_b = pair.partition("-")
    if key_a not in sandbox.SANDBOXES or key_b not in sandbox.SANDBOXES or key_a == key_b:
        raise ValueError(f"--pair must be two of {', '.join(sandbox.SANDBOXES)}: {pair!r}")
    side_b = registry.get(key_b)
    if not side_b.capabilities.list_changes:
        raise ValueError(
            f"{side_b.name} cannot list its contacts: put it on side A (e.g. {key_b}-{key_a})"
        )
    return key_a, key_b


def incremental(world: World, changes: int, round_no: int) -> dict[str, Any]:
    per_side = world.edit_spread(changes, round_no)
    result = timed_run(world)
    out = describe(result, world)
    out["changes"] = per_side
    out["list_requests"] = {side: out["by_side"][side]["by_kind"].get("list", 0) for side in SIDES}
    out["write_requests"] = {
        side: out["by_side"][side]["by_kind"].get("batch_write", 0)
        + out["by_side"][side]["by_kind"].get("single_write", 0)
        for side in SIDES
    }
    floor = 0
    for side in SIDES:
        connector = world.apps[side].connector_class
        created, updated = writes_of(result.run, side)
        floor += write_floor(connector, created, updated)
        floor += read_floor(connector, per_side[side]) if world.apps[side].inbox_fed else 1
    out["floor"] = floor
    out["ratio_to_floor"] = round(out["requests"] / floor, 2) if floor else None
    return out


def run_benchmark(*args: Any, latency_ms: float = 0.0, **kwargs: Any) -> dict[str, Any]:
    """Run the whole benchmark (see ``_run_benchmark``). At latency 0 the
    apps' limits are off on both ends — the sandboxes' and the clients' own
    pacing — so the figures measure driftsync, not the apps' windows; with
    ``latency_ms`` both are on, as against the real apps."""
    if latency_ms > 0:
        return _run_benchmark(*args, latency_ms=latency_ms, **kwargs)
    with override_settings(DRIFTSYNC_RATE_LIMITS=NO_PACING):
        return _run_benchmark(*args, latency_ms=latency_ms, **kwargs)


def _run_benchmark(
    pair: str = "google-mailchimp",
    contacts: int = 2000,
    changes: int = 10,
    *,
    overlap: float = 0.5,
    differ: float = 0.2,
    raw: bool = True,
    small: bool = True,
    cleanup: bool = True,
    progress: Any = None,
    latency_ms: float = 0.0,
) -> dict[str, Any]:
    """Run the whole benchmark; returns the report (a JSON-able dict).

    ``latency_ms`` > 0: every sandbox request takes that long, the apps' real
    limits are on, and the report adds the **latency floor** (the floor's
    requests sent by a bare script at each app's allowed concurrency and pace
    under the same latency) and engine wall / latency floor."""
    say = progress or (lambda message: None)
    key_a, key_b = _pair(pair)
    if contacts < 2 or changes < 0 or not 0 <= overlap <= 1 or not 0 <= differ <= 1:
        raise ValueError("need contacts >= 2, changes >= 0, 0 <= overlap, differ <= 1")
    if not 0 <= latency_ms <= 10_000:
        raise ValueError(f"--latency must be 0..10000 milliseconds: {latency_ms}")
    latency = latency_ms / 1000
    started = time.perf_counter()
    report: dict[str, Any] = {
        "pair": pair,
        "contacts_per_side": contacts,
        "changes": changes,
        "overlap": overlap,
        "differ": differ,
        "latency_ms": latency_ms,
        "rss_mb_at_start": current_rss_mb(),
        "sandbox_limits": LIMITS_ON_NOTE if latency_ms > 0 else LIMITS_NOTE,
    }
    worlds: list[World] = []
    tmpdir = tempfile.mkdtemp(prefix="driftsync-bench-")
    recorder = Recorder(os.path.join(tmpdir, "requests.pickle"))
    try:
        # ---------------------------------------------------------- initial
        say(f"seeding {contacts} contacts per side ({pair})")
        t0 = time.perf_counter()
        world = World.build(key_a, key_b, contacts, overlap, differ, latency=latency)
        worlds.append(world)
        world.connect(pair)
        report["seed_s"] = round(time.perf_counter() - t0, 2)
        report["shared_emails"] = world.shared
        report["shared_differing"] = world.differ
        report["rss_mb_after_seeding"] = current_rss_mb()
        say("initial sync")
        initial = timed_run(world, recorder=recorder)
        recorder.close()
        report["rss_mb_after_initial"] = current_rss_mb()
        init = describe(initial, world)
        total_contacts = 2 * contacts
        init["contacts"] = total_contacts
        init["contacts_per_s"] = round(total_contacts / initial.wall, 1) if initial.wall else None
        floor_parts = {}
        for side in SIDES:
            connector = world.apps[side].connector_class
            created, updated = writes_of(initial.run, side)
            floor_parts[side] = {
                "reads": read_floor(connector, contacts, world.carried.get(side, 0)),
                "writes": write_floor(connector, created, updated),
                "created": created,
                "updated": updated,
            }
        floor = sum(p["reads"] + p["writes"] for p in floor_parts.values())
        init["floor"] = floor
        init["floor_by_side"] = floor_parts
        init["ratio_to_floor"] = round(init["requests"] / floor, 2)
        report["initial"] = init

        # ------------------------------------------------------ incremental
        say("settling run (echoes of the initial sync's writes)")
        report["settle"] = describe(timed_run(world), world)
        say(f"incremental run: {changes} changes")
        report["incremental"] = incremental(world, changes, 1)
        report["rss_mb_peak_sync"] = peak_rss_mb()

        # ------------------------------------------------ 100 times smaller
        if small:
            share = overlap if overlap > 0 else 1.0
            n_small = max(contacts // 100, math.ceil(changes / share), 10)
            say(f"small connection: {n_small} contacts per side")
            little = World.build(key_a, key_b, n_small, overlap, differ, latency=latency)
            worlds.append(little)
            little.connect(pair)
            timed_run(little)
            timed_run(little)
            inc_small = incremental(little, changes, 1)
            inc_small["contacts_per_side"] = n_small
            report["incremental_small"] = inc_small
            big, tiny = report["incremental"]["wall_s"], inc_small["wall_s"]
            report["incremental_wall_ratio"] = round(big / tiny, 2) if tiny else None
            report["incremental_query_delta"] = (
                report["incremental"]["db_queries"] - inc_small["db_queries"]
            )
            if cleanup:
                little.cleanup()
            little.stop()
            worlds.remove(little)
            del little
            gc.collect()

        # ---------------------------------------------------------- raw floor
        if raw:
            say("raw time floor: replaying the initial sync's requests")
            records = list(recorder.records())
            target = World.build(key_a, key_b, contacts, overlap, differ, latency=latency)
            worlds.append(target)
            raw_report = replay(records, target, world)
            raw_report["recorded"] = recorder.count
            report["raw"] = raw_report
            report["initial"]["engine_over_raw"] = (
                round(init["wall_s"] / raw_report["wall_s"], 2) if raw_report["wall_s"] else None
            )
            del records
        if latency:
            say(f"latency floor: the floor's requests at {latency_ms:g} ms, apps' limits on")
            records = list(recorder.records())
            target = World.build(key_a, key_b, contacts, overlap, differ, latency=latency)
            worlds.append(target)
            lat = latency_floor(records, target, world, floor_parts)
            report["latency_floor"] = lat
            report["initial"]["engine_over_latency_floor"] = (
                round(init["wall_s"] / lat["wall_s"], 2) if lat["wall_s"] else None
            )
            del records
        report["rss_mb_peak_total"] = peak_rss_mb()
    finally:
        recorder.close()
        with contextlib.suppress(OSError):
            os.remove(recorder.path)
            os.rmdir(tmpdir)
        for w in worlds:
            if cleanup:
                w.cleanup()
            w.stop()
    report["bench_s"] = round(time.perf_counter() - started, 1)
    report["targets"] = targets(report)
    return report


__all__ = ["PAIRS", "render", "run_benchmark", "targets"]
