"""Credentials encrypted at rest with Fernet (``cryptography``).

The key list comes from ``settings.CREDENTIALS_KEYS``, newest first: the first
key encrypts, all of them decrypt, so a key can be rotated by putting a new one
in front and re-saving (``python manage.py rotate_credentials``).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "CREDENTIALS_KEY must be Fernet keys (32 url-safe base64-encoded bytes)"
        ) from exc


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.CREDENTIALS_KEYS))


def encrypt(value: Any) -> str:
    return fernet().encrypt(json.dumps(value).encode()).decode()


def decrypt(token: str) -> Any:
    try:
        return json.loads(fernet().decrypt(token.encode()))
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "Stored credentials cannot be decrypted with CREDENTIALS_KEY; was the key changed "
            "without keeping the old one in the list?"
        ) from exc


class EncryptedJSONField(models.TextField):
    """A JSON value stored as Fernet ciphertext. Not searchable, by design."""

    description = "JSON encrypted at rest"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Any:
        if value in (None, ""):
            return {}
        return decrypt(value)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and value.startswith("gAAAA"):
            return decrypt(value)
        return value if value is not None else {}

    def get_prep_value(self, value: Any) -> str:
        return encrypt(value if value is not None else {})

    def value_to_string(self, obj: Any) -> str:
        # dumpdata gets ciphertext, never the secret
        return self.get_prep_value(self.value_from_object(obj))
