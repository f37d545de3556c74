"""Joining first + last into one full name and splitting it back.

The split is conservative: when the new full name still starts with the old
first name (or ends with the old last name), only the other part changes, so
"Anna Maria" + "van der Berg" survives an edit of the last name. Otherwise
nameparser splits it, keeping particles ("van der", "de la") with the last
name and suffixes ("Jr.") after it, so the parts join back to the same text.
"""

from __future__ import annotations

from nameparser import HumanName


def join_name(first: str | None, last: str | None) -> str | None:
    joined = " ".join(part.strip() for part in (first, last) if part and part.strip())
    return joined or None


def split_name(
    full: str | None, old_first: str | None = None, old_last: str | None = None
) -> tuple[str | None, str | None]:
    """Split ``full`` into (first, last), changing as little as possible."""
    full = " ".join((full or "").split())
    if not full:
        return None, None
    old_first = " ".join((old_first or "").split()) or None
    old_last = " ".join((old_last or "").split()) or None
    if join_name(old_first, old_last) == full:
        return old_first, old_last
    if old_first and full.startswith(old_first + " "):
        return old_first, full[len(old_first) + 1 :]
    if old_first and full == old_first:
        return old_first, None
    if old_last and full.endswith(" " + old_last):
        return full[: -len(old_last) - 1], old_last
    parsed = HumanName(full)
    first = " ".join(p for p in (parsed.title, parsed.first, parsed.middle) if p) or None
    last = " ".join(p for p in (parsed.last, parsed.suffix) if p) or None
    if join_name(first, last) != full:
        # nameparser reordered something ("Last, First"): keep the text as typed
        head, _, tail = full.partition(" ")
        return head, tail or None
    return first, last
