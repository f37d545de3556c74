"""Values every database we run on can store. Pure.

An app can hand over anything in one contact (a NUL character, half of a
UTF-16 pair, 100,000 characters, a number where text is expected); PostgreSQL
refuses NUL in text and jsonb and over-long varchar values, and no database
encodes a lone surrogate. What we store of a contact is made storable here,
never refused: those characters are dropped, and a value too long for its
column is cut with a note.
"""

from __future__ import annotations

import math
import re
from typing import Any

#: NUL, and the surrogates UTF-8 cannot encode when they stand alone
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text(value: str) -> str:
    """``value`` without the characters no database stores."""
    return _UNSTORABLE.sub("", value) if _UNSTORABLE.search(value) else value


def json(value: Any) -> Any:
    """A JSON value (stored bases, changes, rule tags) as the databases store it:
    strings and keys cleaned, numbers that are not JSON (NaN, infinity) as text."""
    kind = type(value)  # the common types first: every base of every binding comes here
    if kind is str:
        return _UNSTORABLE.sub("", value) if _UNSTORABLE.search(value) else value
    if kind is dict:
        return {
            (k if type(k) is str and not _UNSTORABLE.search(k) else text(str(k))): json(v)
            for k, v in value.items()
        }
    if kind is list:
        return [json(v) for v in value]
    if value is None or kind is bool or kind is int:
        return value
    return _other(value)


def _other(value: Any) -> Any:
    if isinstance(value, str):
        return text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {text(str(k)): json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return text(str(value))


def cut(value: str, max_length: int) -> str:
    """``value`` cleaned and cut to a column of ``max_length`` characters
    (the caller says so where a person reads it: see ``cut_note``)."""
    return text(value)[:max_length]


def cut_note(what: str, value: str | None, max_length: int) -> str:
    """Why a stored value differs from the app's, or "" when it does not."""
    if value is None or len(text(value)) <= max_length:
        return ""
    return f"{what} is {len(text(value))} characters long; stored cut to {max_length}."
