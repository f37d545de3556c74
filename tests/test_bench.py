"""The benchmark at a tiny size: the report is complete and the requests the
connectors counted are the requests the sandboxes served. Nothing is timed."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from connections import bench
from connections.bench.world import LIMITS_NOTE
from connections.models import Account, Connection, WebhookEvent

PHASES = ("initial", "settle", "incremental", "incremental_small")


def check_counts_match(report: dict) -> None:
    for phase in PHASES:
        for side in ("a", "b"):
            s = report[phase]["by_side"][side]
            assert s["total"] == s["served_by_sandbox"], (phase, side, s)
            assert sum(s["by_endpoint"].values()) == s["total"]


@pytest.mark.django_db(transaction=True)
def test_google_mailchimp_report_is_complete_and_counts_match():
    report = bench.run_benchmark("google-mailchimp", 30, 3, overlap=0.5)
    init = report["initial"]
    for key in ("wall_s", "contacts_per_s", "requests", "floor", "ratio_to_floor", "db_queries"):
        assert init[key] is not None, key
    assert init["floor"] >= 2  # at least one list page per side
    assert init["counters"]["a"]["created"] == 15  # B's own contacts, created in A
    assert init["counters"]["b"]["created"] == 15
    assert report["raw"]["requests"] == report["raw"]["recorded"] == init["requests"]
    assert report["raw"]["status_mismatches"] == {}
    assert init["engine_over_raw"] > 0
    inc = report["incremental"]
    assert inc["changes"] == {"a": 2, "b": 1}
    assert set(inc["list_requests"]) == {"a", "b"}
    assert inc["db_queries"] > 0
    assert report["incremental_small"]["contacts_per_side"] >= 10
    assert report["incremental_wall_ratio"] > 0
    assert "incremental_query_delta" in report
    for key in ("rss_mb_after_seeding", "rss_mb_peak_sync", "rss_mb_peak_total"):
        assert report[key] > 0
    assert set(report["targets"]) >= {"initial_requests_le_1.1x_floor", "peak_rss_le_300mb"}
    check_counts_match(report)
    # the bench leaves nothing behind in the database
    assert not Connection.objects.filter(name__startswith="bench ").exists()
    assert not Account.objects.filter(label__startswith="bench ").exists()
    # and the table renders, saying that the sandboxes' limits were off
    table = bench.render(report)
    assert "requests / floor" in table
    assert f"sandbox rate limits: {LIMITS_NOTE}" in table


@pytest.mark.django_db(transaction=True)
def test_drift_hubspot_reads_drift_through_the_inbox():
    report = bench.run_benchmark("drift-hubspot", 20, 2, raw=False)
    init = report["initial"]
    # Drift cannot list: its contacts come in through contact_identified
    # deliveries, which carry the whole contact: no read, and none in the floor
    assert init["floor_by_side"]["a"]["reads"] == 0
    assert init["by_side"]["a"]["by_kind"].get("list", 0) == 0
    assert init["by_side"]["a"]["by_endpoint"].get("GET /contacts/{id}", 0) == 0
    assert init["counters"]["a"]["scanned"] == 20
    # a contact_updated delivery names the contact only: one read each (and
    # one for the Drift counterpart of each HubSpot change)
    inc = report["incremental"]
    assert inc["changes"] == {"a": 1, "b": 1}
    assert inc["by_side"]["a"]["by_endpoint"].get("GET /contacts/{id}") == 2
    check_counts_match(report)
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_with_latency_the_latency_floor_and_ratio_are_reported():
    report = bench.run_benchmark("google-mailchimp", 20, 2, raw=False, small=False, latency_ms=20)
    init = report["initial"]
    lat = report["latency_floor"]
    assert report["latency_ms"] == 20
    assert lat["latency_ms"] == 20
    # the floor's requests, each side's share, sent under the same latency
    assert lat["requests"] == init["floor"]
    for side in ("a", "b"):
        parts = init["floor_by_side"][side]
        assert lat["requests_by_side"][side] == parts["reads"] + parts["writes"]
    assert lat["wall_s"] > 0
    assert init["engine_over_latency_floor"] > 0
    assert "initial_engine_le_1.5x_latency_floor" in report["targets"]
    assert "engine / latency floor" in bench.render(report)
    # the apps' limits were on, and what the connectors counted is what was served
    for phase in ("initial", "settle", "incremental"):
        for side in ("a", "b"):
            s = report[phase]["by_side"][side]
            assert s["total"] == s["served_by_sandbox"], (phase, side, s)


def test_a_bad_pair_is_refused():
    with pytest.raises(ValueError, match="Drift cannot list"):
        bench.run_benchmark("google-drift", 10, 1)
    with pytest.raises(ValueError, match="--pair"):
        bench.run_benchmark("google-nowhere", 10, 1)


@pytest.mark.django_db(transaction=True)
def test_the_command_prints_one_json_object(capsys):
    call_command(
        "bench_sync",
        "--pair",
        "hubspot-google",
        "--contacts",
        "12",
        "--changes",
        "2",
        "--json",
        "--no-raw",
        "--no-small",
        "--db",
        "configured",
    )
    report = json.loads(capsys.readouterr().out)
    assert report["pair"] == "hubspot-google"
    assert report["initial"]["requests"] == sum(
        report["initial"]["by_side"][s]["served_by_sandbox"] for s in ("a", "b")
    )
