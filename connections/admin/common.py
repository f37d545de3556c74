"""What the admin modules share: a paginator that never counts whole tables,
each side's app name, and the fragments (a change table, folded text, a
link) that read-only fields and messages render from their templates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.paginator import Paginator
from django.template.loader import render_to_string
from django.utils.functional import cached_property

from connectors import registry

from ..models import Connection, Side


class CappedCountPaginator(Paginator):
    """Counts at most ``CAP`` + 1 rows (``COUNT(*)`` over a ``LIMIT`` subquery),
    never the whole table; narrow with filters to reach older rows."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:  # type: ignore[override]
        return self.object_list[: self.CAP + 1].count()


def connector_oauth_provider(key: str) -> str:
    try:
        return registry.get(key).oauth_provider
    except (KeyError, ImportError, AttributeError):
        return ""


def side_names(conn: Connection) -> dict[str, str]:
    """'HubSpot', 'Google Contacts' (with the account's label when both sides
    are the same app): the apps as previews and timelines name them."""
    return {side: conn.side_name(side) for side in (Side.A, Side.B)}


def fragment(name: str, **context: Any) -> str:
    """A piece of a page (a read-only field's value, a message with a link)
    rendered from ``admin/connections/<name>``; the result is safe HTML."""
    return render_to_string(f"admin/connections/{name}", context)


@dataclass(frozen=True)
class ChangeRow:
    """One field of a sync event: old → new, and a note (or the other
    side's value when both sides changed)."""

    field: str
    old: Any
    new: Any
    note: Any


def change_rows(changes: list[dict[str, Any]] | None) -> list[ChangeRow]:
    return [
        ChangeRow(
            c.get("field", ""),
            "" if c.get("old") is None else c.get("old"),
            "" if c.get("new") is None else c.get("new"),
            c.get("note") or ("" if c.get("other") is None else f"other side: {c['other']}"),
        )
        for c in changes or []
    ]


def changes_table(changes: list[dict[str, Any]] | None) -> str:
    return fragment("includes/changes_table.html", rows=change_rows(changes))


def folded(text: str, summary: str = "show") -> str:
    """Long text (an error, a webhook body) folded in ``<details>``."""
    return fragment("includes/folded.html", text=text, summary=summary) if text else "—"


def link_to(url: str, text: str) -> str:
    return fragment("includes/link.html", url=url, text=text)
