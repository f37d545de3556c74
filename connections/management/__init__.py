"""Helpers shared by driftsync's management commands."""

from __future__ import annotations

from django.core.management.base import CommandError

from connections.models import Connection


def resolve_connections(label: str | None, *, all_: bool) -> list[Connection]:
    """``CONNECTION`` (an id or a name) or ``--all``, never both."""
    if all_ and label:
        raise CommandError("Give a CONNECTION or --all, not both.")
    queryset = Connection.objects.select_related("account_a", "account_b")
    if all_:
        return list(queryset.order_by("pk"))
    if not label:
        raise CommandError("Give a CONNECTION (id or name) or --all.")
    found = queryset.filter(name=label).first()
    if found is None and label.isdigit():
        found = queryset.filter(pk=int(label)).first()
    if found is None:
        known = [f"{pk} {name!r}" for pk, name in queryset.order_by("pk").values_list("pk", "name")]
        listing = "; ".join(known[:50]) + (f"; … {len(known) - 50} more" if len(known) > 50 else "")
        raise CommandError(
            f"No connection with id or name {label!r}. "
            + (f"The connections are: {listing}." if known else "There are no connections yet.")
        )
    return [found]
