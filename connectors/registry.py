"""The explicit list of connectors: key -> (display name, dotted class path).

Classes are imported on first use, so the admin's choices (and migrations)
never depend on importing every app's client. A new connector is one line
here; see "Adding a connector" in the README.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module

from .base import FULL_NAME_KEY, Connector, Field, FieldType, Semantic

CONNECTORS: dict[str, tuple[str, str]] = {
    "drift": ("Drift", "connectors.drift.connector.DriftConnector"),
    "google": ("Google Contacts", "connectors.google.connector.GoogleConnector"),
    "mailchimp": ("Mailchimp", "connectors.mailchimp.connector.MailchimpConnector"),
    "hubspot": ("HubSpot", "connectors.hubspot.connector.HubSpotConnector"),
}


def choices() -> list[tuple[str, str]]:
    return [(key, name) for key, (name, _path) in CONNECTORS.items()]


@cache
def get(key: str) -> type[Connector]:
    try:
        _name, path = CONNECTORS[key]
    except KeyError:
        raise KeyError(f"Unknown connector {key!r}; known: {', '.join(CONNECTORS)}") from None
    module, _, cls = path.rpartition(".")
    return getattr(import_module(module), cls)


def default_mappings(fields_a: list[Field], fields_b: list[Field]) -> list[tuple[str, str]]:
    """Default field pairs for two apps, by what the fields mean.

    A side with one full name pairs with the other side's virtual
    ``full_name`` (first + last, joined and split by the engine); two split
    sides pair first with first and last with last.
    """

    def by_semantic(fields: list[Field]) -> dict[Semantic, Field]:
        out: dict[Semantic, Field] = {}
        for f in fields:
            if f.semantic and f.semantic not in out and not f.custom:
                out[f.semantic] = f
        return out

    sa, sb = by_semantic(fields_a), by_semantic(fields_b)
    pairs: list[tuple[str, str]] = []
    split_a = Semantic.FIRST_NAME in sa and Semantic.LAST_NAME in sa
    split_b = Semantic.FIRST_NAME in sb and Semantic.LAST_NAME in sb
    for sem in Semantic:
        if sem in (Semantic.FIRST_NAME, Semantic.LAST_NAME, Semantic.FULL_NAME):
            continue
        if sem in sa and sb.get(sem) and not (sa[sem].read_only and sb[sem].read_only):
            pairs.append((sa[sem].key, sb[sem].key))
    if split_a and split_b:
        pairs.append((sa[Semantic.FIRST_NAME].key, sb[Semantic.FIRST_NAME].key))
        pairs.append((sa[Semantic.LAST_NAME].key, sb[Semantic.LAST_NAME].key))
    elif Semantic.FULL_NAME in sa and Semantic.FULL_NAME in sb:
        pairs.append((sa[Semantic.FULL_NAME].key, sb[Semantic.FULL_NAME].key))
    return pairs


__all__ = ["CONNECTORS", "FULL_NAME_KEY", "FieldType", "choices", "default_mappings", "get"]
