"""The webhook → app benchmark at a tiny size: a real web server and worker
cluster turn identified Drift visitors into HubSpot contacts, and the
report says how many arrived and how long they took. Nothing is timed."""

from __future__ import annotations

import pytest

from connections.bench.webhooks import render_webhook_latency, run_webhook_latency
from connections.models import Account, Connection


@pytest.mark.django_db(transaction=True)
def test_identified_visitors_reach_hubspot_through_the_real_server_and_workers(settings):
    settings.DRIFTSYNC_ALLOW_BASE_URL_OVERRIDE = True
    report = run_webhook_latency(rate=4, seconds=1, drain=90)
    assert report["sent"] == 4
    assert report["arrived"] == 4, report
    assert report["deliveries_stored"] >= 4
    assert report["runs"] >= 1
    assert report["latency_s"]["p50"] <= report["latency_s"]["p95"] <= report["latency_s"]["max"]
    assert "arrived 4 of 4" in render_webhook_latency(report)
    assert not Connection.objects.exists()
    assert not Account.objects.exists()
