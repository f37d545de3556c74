"""What the admin modules share: a paginator that never counts whole tables,
each side's app name, and the fragments (a change table, folded text, a
link) that read-only fields and messages render from their templates."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.functional import cached_property
from django.utils.text import smart_split, unescape_string_literal

from connectors import registry

from ..models import Connection, Side


class CappedCountPaginator(Paginator):
    """Counts at most ``CAP`` + 1 rows (``COUNT(*)`` over a ``LIMIT`` subquery),
    never the whole table; narrow with filters to reach older rows."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:  # type: ignore[override]
        return self.object_list[: self.CAP + 1].count()


class JsonTextSearch:
    """The admin's search, finding names with accents in JSON columns too.

    SQLite keeps JSON as Django wrote it, with non-ASCII characters escaped
    ("Zo\\u00eb"), so "Zoë" would find nothing there (PostgreSQL's jsonb
    shows the text as is). A search term with such characters is also looked
    for, in the ``json_search_fields``, in its escaped form. Each term must
    match, as in Django's own search."""

    json_search_fields: tuple[str, ...] = ()

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        if search_term.isascii() or not self.json_search_fields:
            return super().get_search_results(request, queryset, search_term)  # type: ignore[misc]
        wanted = Q()
        for bit in smart_split(search_term):
            if bit[:1] in "\"'" and bit[-1:] == bit[:1]:
                bit = unescape_string_literal(bit)
            term = Q()
            for name in self.get_search_fields(request):  # type: ignore[attr-defined]
                if name.startswith("="):
                    term |= Q(**{f"{name[1:]}__iexact": bit})
                    continue
                term |= Q(**{f"{name}__icontains": bit})
                if name in self.json_search_fields:
                    # (escaped, only ASCII letters compare case-insensitively)
                    for variant in {bit, bit.lower(), bit.upper(), bit.capitalize(), bit.title()}:
                        escaped = json.dumps(variant)[1:-1]
                        term |= Q(**{f"{name}__icontains": escaped})
            wanted &= term
        return queryset.filter(wanted), False


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
