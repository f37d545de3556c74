"""The benchmark's report: the issue's targets, met or not, and the table."""

from __future__ import annotations

import math
from typing import Any

from .world import SIDES


def targets(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, met or not (None: not measured in this run)."""
    init = report.get("initial", {})
    inc = report.get("incremental", {})
    out: dict[str, Any] = {
        "initial_requests_le_1.1x_floor": init.get("ratio_to_floor", math.inf) <= 1.1,
        "initial_engine_le_1.5x_raw": (
            init["engine_over_raw"] <= 1.5 if init.get("engine_over_raw") else None
        ),
        "incremental_le_3_list_requests_per_side": (
            all(v <= 3 for v in inc["list_requests"].values()) if inc else None
        ),
        "incremental_wall_le_1.5x_small": (
            report["incremental_wall_ratio"] <= 1.5
            if report.get("incremental_wall_ratio")
            else None
        ),
        "incremental_queries_independent_of_size": (
            report["incremental_query_delta"] == 0 if "incremental_query_delta" in report else None
        ),
        "peak_rss_le_300mb": report.get("rss_mb_peak_total", math.inf) <= 300,
    }
    if report.get("latency_ms"):
        ratio = init.get("engine_over_latency_floor")
        out["initial_engine_le_1.5x_latency_floor"] = ratio <= 1.5 if ratio else None
        out["initial_requests_le_1.2x_floor"] = init.get("ratio_to_floor", math.inf) <= 1.2
        out["incremental_requests_le_1.5x_floor"] = (
            inc["ratio_to_floor"] <= 1.5 if inc.get("ratio_to_floor") else None
        )
    return out


# -------------------------------------------------------------------- output


def render(report: dict[str, Any]) -> str:
    """The human-readable table."""
    lines: list[str] = []
    add = lines.append
    init = report["initial"]
    add(
        f"bench_sync {report['pair']}: {report['contacts_per_side']} contacts per side, "
        f"{report['shared_emails']} shared emails ({report['shared_differing']} differing), "
        f"{report['changes']} changes"
        + (f", {report['latency_ms']:g} ms latency" if report.get("latency_ms") else "")
    )
    add("")
    rows: list[tuple[str, str]] = [
        ("seeding", f"{report['seed_s']} s"),
        ("initial sync: wall", f"{init['wall_s']} s"),
        ("initial sync: contacts/s", f"{init['contacts_per_s']}"),
        ("initial sync: requests", f"{init['requests']}"),
        ("initial sync: floor", f"{init['floor']}"),
        ("initial sync: requests / floor", f"{init['ratio_to_floor']}"),
        ("initial sync: db queries", f"{init['db_queries']}"),
    ]
    if "raw" in report:
        rows += [
            ("raw replay: wall", f"{report['raw']['wall_s']} s ({report['raw']['requests']} req)"),
            ("initial sync: engine / raw", f"{init.get('engine_over_raw')}"),
        ]
    if "latency_floor" in report:
        lat = report["latency_floor"]
        rows += [
            (
                "latency floor: wall",
                f"{lat['wall_s']} s ({lat['requests']} req at {lat['latency_ms']} ms)",
            ),
            ("initial sync: engine / latency floor", f"{init.get('engine_over_latency_floor')}"),
        ]
    settle = report["settle"]
    rows += [
        (
            "settling run: wall / requests / queries",
            f"{settle['wall_s']} s / {settle['requests']} / {settle['db_queries']}",
        ),
    ]
    inc = report["incremental"]
    rows += [
        ("incremental: wall", f"{inc['wall_s']} s"),
        ("incremental: requests (floor)", f"{inc['requests']} ({inc['floor']})"),
        (
            "incremental: list requests a / b",
            f"{inc['list_requests']['a']} / {inc['list_requests']['b']}",
        ),
        (
            "incremental: write requests a / b",
            f"{inc['write_requests']['a']} / {inc['write_requests']['b']}",
        ),
        ("incremental: db queries", f"{inc['db_queries']}"),
    ]
    if "incremental_small" in report:
        small = report["incremental_small"]
        rows += [
            (f"incremental at {small['contacts_per_side']}/side: wall", f"{small['wall_s']} s"),
            (
                "incremental: requests / queries (small)",
                f"{small['requests']} / {small['db_queries']}",
            ),
            ("incremental: wall ratio large / small", f"{report['incremental_wall_ratio']}"),
        ]
    rows += [
        ("RSS before the first sync", f"{report['rss_mb_after_seeding']} MB"),
        ("peak RSS (sync phases)", f"{report['rss_mb_peak_sync']} MB"),
        ("peak RSS (process, incl. replay)", f"{report['rss_mb_peak_total']} MB"),
        ("benchmark total", f"{report['bench_s']} s"),
    ]
    width = max(len(k) for k, _ in rows)
    lines.extend(f"  {k.ljust(width)}  {v}" for k, v in rows)
    for title, phase in (("initial sync", init), ("incremental", inc)):
        add("")
        add(f"requests by endpoint, {title} (connector count / sandbox served):")
        for side in SIDES:
            s = phase["by_side"][side]
            add(f"  {side} = {s['app']}: {s['total']} / {s['served_by_sandbox']}")
            for endpoint, n in s["by_endpoint"].items():
                add(f"    {n:>7}  {endpoint}")
    add("")
    add("targets:")
    for name, ok in report["targets"].items():
        add(f"  {'n/a ' if ok is None else ('ok  ' if ok else 'MISS')}  {name}")
    return "\n".join(lines)
