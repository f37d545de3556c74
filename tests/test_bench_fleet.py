"""The fleet benchmark at a tiny size, and what makes an idle run cheap: no
schema read while the account's copy is fresh, no write for an unchanged
cursor. Nothing is timed."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from connections.bench.fleet import run_fleet
from connections.models import Account, Connection


@pytest.mark.django_db(transaction=True)
def test_an_idle_fleet_is_measured_and_its_idle_runs_read_only_changes(settings):
    settings.DRIFTSYNC_ALLOW_BASE_URL_OVERRIDE = True
    report = run_fleet(connections=3, contacts=6)
    routes = report["requests_by_route"]
    # each idle run asks each side for its changes and nothing else: no schema,
    # no contact groups, no writes
    assert all(("GET" in r or "search" in r) for r in routes), routes
    assert not any("properties" in r or "batch" in r for r in routes), routes
    assert sum(routes.values()) == report["requests_per_idle_run"]["mean"] * 3
    assert report["queries_per_idle_run"]["max"] > 0
    assert 0 < report["worker_share"] < 1
    # the bench leaves nothing behind
    assert not Connection.objects.exists()
    assert not Account.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_bench_fleet_command_prints_the_report(settings):
    settings.DRIFTSYNC_ALLOW_BASE_URL_OVERRIDE = True
    out = io.StringIO()
    call_command(
        "bench_fleet", "--connections", "2", "--contacts", "4", "--json", "--db", "configured",
        stdout=out,
    )  # fmt: skip
    report = json.loads(out.getvalue())
    assert report["connections"] == 2
    assert set(report["idle_run_ms"]) == {"mean", "p50", "p95", "max"}
