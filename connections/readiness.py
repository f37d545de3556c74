"""Is a connection ready to start? The steps a person goes through before
"Start syncing" (accounts → audience/group → mappings → rules → dry run),
what is done and what is missing. ``actions.start`` refuses while a required
step is missing; the connection's change page shows the same list.

Reads the database only (the accounts' status and options as last tested):
no app is called.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors import registry

from .models import Account, Connection, Side, SyncRun


@dataclass(frozen=True)
class Step:
    name: str
    done: bool
    detail: str
    #: a missing required step blocks Start; the others are advice
    required: bool = True

    @property
    def blocking(self) -> bool:
        return self.required and not self.done


def _account_problem(conn: Connection, side: str) -> str:
    account = conn.account(side)
    app = conn.side_name(side)
    if account.status == Account.Status.OK:
        return ""
    if account.status == Account.Status.UNCHECKED:
        return f"the {app} account “{account.label}” was never tested: open it and press Test."
    if account.status == Account.Status.NEEDS_REAUTH:
        return f"the {app} account “{account.label}” needs re-authorization: connect it again."
    reason = f" ({account.status_reason})" if account.status_reason else ""
    return f"the {app} account “{account.label}” failed its last test{reason}: test it again."


def _missing_settings(conn: Connection, side: str) -> list[str]:
    try:
        wanted = registry.get(conn.account(side).connector).side_settings
    except (KeyError, ImportError, AttributeError):
        return []
    current = conn.side_settings(side) or {}
    return [
        f"choose the {conn.side_name(side)} {s.label.lower()}"
        for s in wanted
        if s.required and current.get(s.key) in (None, "")
    ]


def _sentence(text: str) -> str:
    return f"{text[:1].upper()}{text[1:]}."


def checklist(conn: Connection) -> list[Step]:
    accounts = [p for side in Side if (p := _account_problem(conn, side))]
    settings = [m for side in Side for m in _missing_settings(conn, side)]
    mappings = conn.mappings.filter(enabled=True).count()
    rules = conn.rules.filter(enabled=True).count()
    dry_run = (
        conn.runs.filter(dry_run=True)
        .exclude(status__in=[SyncRun.Status.RUNNING, SyncRun.Status.FAILED])
        .order_by("-started_at")
        .first()
    )
    return [
        Step(
            "Accounts",
            not accounts,
            "; ".join(accounts)
            or f"{conn.side_name(Side.A)} and {conn.side_name(Side.B)} are connected and tested.",
        ),
        Step(
            "Audience / contact group",
            not settings,
            _sentence("; ".join(settings)) if settings else "Chosen where the app needs it.",
        ),
        Step(
            "Field mappings",
            mappings > 0,
            f"{mappings} field(s) mapped." if mappings else "Map at least one field (email).",
        ),
        Step(
            "Rules",
            rules > 0,
            f"{rules} rule(s) enabled." if rules else "Enable at least one rule.",
        ),
        Step(
            "Dry run",
            dry_run is not None,
            f"Last dry run {dry_run.started_at:%Y-%m-%d %H:%M}: read what it would do."
            if dry_run
            else "Recommended: preview what the first sync would do (it writes nothing).",
            required=False,
        ),
    ]


def start_problems(conn: Connection) -> list[str]:
    """Why the connection cannot start yet (empty: it can)."""
    return [f"{step.name}: {step.detail}" for step in checklist(conn) if step.blocking]
