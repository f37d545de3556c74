"""A connection's health at a glance: what it is doing now, when it last
synced and who started that, how its contacts stand, its last runs, and a
chart of the last 30 days drawn server-side as inline SVG (no JavaScript).

Every query here is bounded: counts go through the (connection, status)
index, runs are the last few or the last 30 days of one connection.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.db.models import Count
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince

from .locking import is_held
from .models import Account, Connection, ContactLink, LinkStatus, Side, SyncRun

#: an account in one of these states stops every connection that uses it
BROKEN_ACCOUNT = (Account.Status.NEEDS_REAUTH, Account.Status.ERROR)

#: link statuses counted on the connection page, in the order shown
COUNTED = [
    (LinkStatus.IN_SYNC, "in sync"),
    (LinkStatus.EXCLUDED, "excluded"),
    (LinkStatus.DUPLICATE, "duplicates"),
    (LinkStatus.FAILING, "failing"),
]
#: the chart's series: run counter, label, colour
SERIES = [
    ("created", "Created", "#2e7d32"),
    ("updated", "Updated", "#1565c0"),
    ("failed", "Failed", "#c62828"),
]
CHART_DAYS = 30
TOP_REASONS = 5
LAST_RUNS = 10
NO_REASON = "(no reason recorded)"
#: the contact list's "failure reason" value for failing links without a reason
NO_REASON_PARAM = "__none__"
CHART_TEMPLATE = "admin/connections/includes/chart.svg"


@dataclass
class State:
    key: str  # draft, scanning, syncing, listening, paused, needs_reauth, error
    label: str
    reason: str = ""
    run: SyncRun | None = None
    run_url: str = ""


@dataclass
class AccountProblem:
    """An account of the connection that does not work: every connection
    that uses it shows it, with the way to the account."""

    side: str
    account: Account
    status: str
    reason: str
    url: str

    @property
    def summary(self) -> str:
        return f"{self.account} ({self.side}): {self.status.lower()}"


def account_problems(conn: Connection) -> list[AccountProblem]:
    """No query beyond the accounts (``select_related`` them for a list)."""
    out = []
    for side, account in ((Side.A, conn.account_a), (Side.B, conn.account_b)):
        if account.status in BROKEN_ACCOUNT:
            out.append(
                AccountProblem(
                    side=conn.side_name(side),
                    account=account,
                    status=account.get_status_display(),
                    reason=account.status_reason,
                    url=reverse("admin:connections_account_change", args=[account.pk]),
                )
            )
    return out


@dataclass
class LinkCount:
    label: str
    status: str
    count: int
    url: str


@dataclass
class Reason:
    reason: str
    count: int
    url: str


@dataclass
class RunRow:
    run: SyncRun
    url: str
    created: int
    updated: int
    failed: int


@dataclass
class DayTotals:
    day: dt.date
    created: int = 0
    updated: int = 0
    failed: int = 0

    def get(self, series: str) -> int:
        return int(getattr(self, series))


@dataclass
class Health:
    state: State
    last_synced: str
    counts: list[LinkCount]
    failing_reasons: list[Reason]
    runs: list[RunRow]
    days: list[DayTotals] = field(default_factory=list)
    chart: Chart | None = None
    account_problems: list[AccountProblem] = field(default_factory=list)


# --------------------------------------------------------------------- state


def running_run(conn: Connection, now: dt.datetime | None = None) -> SyncRun | None:
    """The run going on now: a worker holds the connection's claim (within
    its heartbeat) and the run is recorded as running."""
    now = now or timezone.now()
    if not is_held(conn.running_since, conn.heartbeat_at, now):
        return None
    return conn.runs.filter(status=SyncRun.Status.RUNNING).order_by("-started_at").first()


def connection_state(conn: Connection, now: dt.datetime | None = None) -> State:
    if conn.state == Connection.State.DRAFT:
        return draft_state(conn, now)
    if conn.state == Connection.State.PAUSED:
        return State("paused", "Paused", conn.state_reason)
    if conn.state == Connection.State.NEEDS_REAUTH:
        return State("needs_reauth", "Needs re-authorization", conn.state_reason)
    if conn.state == Connection.State.ERROR:
        return State("error", "Error", conn.state_reason or "no reason recorded")
    problems = account_problems(conn)
    if problems:
        # still active, but its next run will stop on the account
        first = problems[0]
        return State("account_problem", f"Account {first.status.lower()}", first.reason)
    run = running_run(conn, now)
    if run is not None:
        what = " (dry run)" if run.dry_run else ""
        if run.full:
            return State("scanning", f"Scanning every contact{what}", run=run, run_url=run_url(run))
        return State("syncing", f"Syncing{what}", run=run, run_url=run_url(run))
    return State("listening", "Listening for changes")


def draft_state(conn: Connection, now: dt.datetime | None = None) -> State:
    """Not started: nothing syncs until a person presses Start syncing. The
    reason is the checklist's first missing step (a dry run may be going on)."""
    from .readiness import checklist

    run = running_run(conn, now)
    if run is not None:
        return State("syncing", "Dry run in progress", run=run, run_url=run_url(run))
    missing = next((step for step in checklist(conn) if step.blocking), None)
    if missing is None:
        return State("draft", "Draft: not started", "ready: press Start syncing.")
    return State("draft", "Draft: not started", f"{missing.name}: {missing.detail}")


def last_synced(conn: Connection, now: dt.datetime | None = None) -> str:
    """'Last synced 5 minutes ago by jonas' (or 'by the scheduler')."""
    if conn.last_synced_at is None:
        return "Never synced yet"
    when = ago(conn.last_synced_at, now or timezone.now())
    # the run that set last_synced_at finished at that very instant
    run = (
        conn.runs.filter(finished_at=conn.last_synced_at, dry_run=False)
        .select_related("started_by")
        .first()
    )
    user = run.started_by if run is not None else conn.last_synced_by
    if user is not None:
        by = f"by {user.get_username()}"
    elif run is not None and run.trigger == SyncRun.Trigger.WEBHOOK:
        by = "after a webhook"
    elif run is not None and run.trigger == SyncRun.Trigger.COMMAND:
        by = "by a management command"
    else:
        by = "by the scheduler"
    return f"Last synced {when} {by}"


def ago(when: dt.datetime, now: dt.datetime) -> str:
    if now - when < dt.timedelta(minutes=1):
        return "just now"
    return f"{timesince(when, now)} ago"


# -------------------------------------------------------------------- counts


def links_url(conn: Connection, **params: str) -> str:
    query = {"connection__id__exact": str(conn.pk), **params}
    return reverse("admin:connections_contactlink_changelist") + "?" + urlencode(query)


def link_counts(conn: Connection) -> list[LinkCount]:
    found = dict(
        ContactLink.objects.filter(connection=conn, status__in=[s for s, _ in COUNTED])
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    return [
        LinkCount(label, status, found.get(status, 0), links_url(conn, status__exact=status))
        for status, label in COUNTED
    ]


def failing_reasons(conn: Connection, limit: int = TOP_REASONS) -> list[Reason]:
    """The most frequent failure reasons, each linking to its contacts
    (the contact list's "failure reason" filter)."""
    rows = (
        ContactLink.objects.filter(connection=conn, status=LinkStatus.FAILING)
        .values("status_reason")
        .annotate(n=Count("pk"))
        .order_by("-n", "status_reason")[:limit]
    )
    out = []
    for row in rows:
        reason = row["status_reason"]
        params = {"status__exact": LinkStatus.FAILING, "reason": reason or NO_REASON_PARAM}
        out.append(Reason(reason or NO_REASON, row["n"], links_url(conn, **params)))
    return out


def run_url(run: SyncRun) -> str:
    if run.dry_run:
        return reverse("admin:connections_connection_dry_run", args=[run.connection_id, run.pk])
    return reverse("admin:connections_syncrun_change", args=[run.pk])


def last_runs(conn: Connection, limit: int = LAST_RUNS) -> list[RunRow]:
    runs = conn.runs.select_related("started_by").order_by("-started_at", "-pk")[:limit]
    return [
        RunRow(run, run_url(run), run.total("created"), run.total("updated"), run.total("failed"))
        for run in runs
    ]


# --------------------------------------------------------------------- chart


def daily_totals(
    conn: Connection, days: int = CHART_DAYS, now: dt.datetime | None = None
) -> list[DayTotals]:
    """Contacts created / updated / failed per local day over the last
    ``days`` days (today included), summed from the counters of real runs.

    Summed in Python: the counters are JSON, and a JSON sum reads differently
    on SQLite and PostgreSQL; a month of one connection's runs is bounded."""
    now = timezone.localtime(now or timezone.now())
    today = now.date()
    first = today - dt.timedelta(days=days - 1)
    start = timezone.make_aware(dt.datetime.combine(first, dt.time.min), now.tzinfo)
    totals = {
        first + dt.timedelta(days=i): DayTotals(first + dt.timedelta(days=i)) for i in range(days)
    }
    runs = SyncRun.objects.filter(
        connection=conn, dry_run=False, started_at__gte=start
    ).values_list("started_at", "counters")
    for started_at, counters in runs.iterator():
        day = totals.get(timezone.localtime(started_at, now.tzinfo).date())
        if day is None:
            continue  # started in the future (clock skew): not on this chart
        for side in (counters or {}).values():
            for series, _label, _colour in SERIES:
                value = side.get(series, 0) if isinstance(side, dict) else 0
                setattr(day, series, day.get(series) + int(value or 0))
    return list(totals.values())


def _nice_ceiling(value: int) -> int:
    """The y axis' top: 1, 2, 5 × a power of ten, at least ``value``."""
    if value <= 0:
        return 1
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10


@dataclass
class LegendItem:
    series: str
    label: str
    colour: str
    total: int
    x: int
    text_x: int


@dataclass
class Tick:
    value: int
    y: str
    text_y: str


@dataclass
class Bar:
    series: str
    value: int
    colour: str
    title: str
    x: str
    y: str
    width: str
    height: str


@dataclass
class ChartDay:
    iso: str
    title: str
    x: str
    width: str
    bars: list[Bar]
    label: str = ""  # on the x axis: every fifth day and the last
    label_x: str = ""


@dataclass
class Chart:
    """The chart's geometry, drawn by ``CHART_TEMPLATE``. Coordinates with
    decimals are formatted here (one decimal), never localized."""

    width: int
    height: int
    left: int
    right_x: int
    top: int
    base_y: int
    plot_height: int
    day_count: int
    legend: list[LegendItem]
    ticks: list[Tick]
    days: list[ChartDay]

    @property
    def tick_label_x(self) -> int:
        return self.left - 4

    @property
    def day_label_y(self) -> int:
        return self.base_y + 14


def _f(value: float) -> str:
    return f"{value:.1f}"


def chart_geometry(days: Sequence[DayTotals]) -> Chart:
    """Grouped bars (created, updated, failed) per day, an x axis with day
    labels, a y axis with its scale, a legend with the period's totals, and
    a tooltip on every bar and every day."""
    width, height = 760, 240
    left, right, top, bottom = 44, 10, 30, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / max(1, len(days))
    bar_w = max(1.0, (slot - 2) / len(SERIES))
    peak = max((d.get(s) for d in days for s, _l, _c in SERIES), default=0)
    ceiling = _nice_ceiling(peak)
    base_y = top + plot_h

    def y_of(value: int) -> float:
        return base_y - plot_h * value / ceiling

    legend = []
    for k, (series, label, colour) in enumerate(SERIES):
        x = left + 130 * k
        legend.append(
            LegendItem(series, label, colour, sum(d.get(series) for d in days), x, x + 14)
        )
    ticks = [
        Tick(value, _f(y_of(value)), _f(y_of(value) + 3))
        for value in ((0, ceiling // 2, ceiling) if ceiling > 1 else (0, ceiling))
    ]
    chart_days = []
    for i, day in enumerate(days):
        x0 = left + i * slot
        label = day.day.strftime("%b %d").replace(" 0", " ")
        numbers = ", ".join(f"{day.get(s)} {s}" for s, _l, _c in SERIES)
        bars = [
            Bar(
                series=series,
                value=value,
                colour=colour,
                title=f"{label}: {value} {series_label.lower()}",
                x=_f(x0 + 1 + j * bar_w),
                y=_f(y_of(value)),
                width=_f(bar_w),
                height=_f(base_y - y_of(value)),
            )
            for j, (series, series_label, colour) in enumerate(SERIES)
            if (value := day.get(series))
        ]
        shown = i % 5 == 0 or i == len(days) - 1
        chart_days.append(
            ChartDay(
                iso=day.day.isoformat(),
                title=f"{label}: {numbers}",
                x=_f(x0),
                width=_f(slot),
                bars=bars,
                label=label if shown else "",
                label_x=_f(x0 + slot / 2),
            )
        )
    return Chart(
        width=width,
        height=height,
        left=left,
        right_x=width - right,
        top=top,
        base_y=base_y,
        plot_height=plot_h,
        day_count=len(days),
        legend=legend,
        ticks=ticks,
        days=chart_days,
    )


def render_chart(days: Sequence[DayTotals]) -> str:
    """The chart as the connection page draws it: inline SVG, no script."""
    return render_to_string(CHART_TEMPLATE, {"chart": chart_geometry(days)})


# ---------------------------------------------------------------- together


def connection_health(conn: Connection, now: dt.datetime | None = None) -> Health:
    days = daily_totals(conn, now=now)
    return Health(
        state=connection_state(conn, now),
        last_synced=last_synced(conn, now),
        counts=link_counts(conn),
        failing_reasons=failing_reasons(conn),
        runs=last_runs(conn),
        days=days,
        chart=chart_geometry(days),
        account_problems=account_problems(conn),
    )
