"""Shared fixtures: users with given permissions and small model factories."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User

from connections.models import Account, Connection
from connectors.base import Credentials, Field, FieldType, Semantic

#: a small schema for accounts that never call their app in a test
SAMPLE_FIELDS = [
    Field("email", "Email", FieldType.EMAIL, semantic=Semantic.EMAIL),
    Field("firstname", "First name", FieldType.TEXT, semantic=Semantic.FIRST_NAME),
    Field("lastname", "Last name", FieldType.TEXT, semantic=Semantic.LAST_NAME),
    Field("phone", "Phone", FieldType.PHONE, semantic=Semantic.PHONE),
    Field("company", "Company", FieldType.TEXT, semantic=Semantic.COMPANY),
]


@pytest.fixture
def view_only_user(db: None) -> User:
    """Staff with every view permission and nothing else."""
    user = User.objects.create_user("viewer", password="viewer-password-1", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    return user


@pytest.fixture
def make_account(db: None) -> Callable[..., Account]:
    counter = iter(range(1, 10_000))

    def make(
        connector: str = "hubspot",
        *,
        fields: list[Field] | None = None,
        token: str = "",
        **values: Any,
    ) -> Account:
        n = next(counter)
        values.setdefault("label", f"{connector} account {n}")
        values.setdefault("remote_id", f"{connector}-{n}")
        account = Account(connector=connector, **values)
        account.schema = Account.dump_schema(SAMPLE_FIELDS if fields is None else fields)
        account.set_credentials(Credentials(api_key=token or f"test-token-{connector}-{n}"))
        account.save()
        return account

    return make


@pytest.fixture
def make_connection(db: None, make_account: Callable[..., Account]) -> Callable[..., Connection]:
    counter = iter(range(1, 10_000))

    def make(
        account_a: Account | None = None, account_b: Account | None = None, **values: Any
    ) -> Connection:
        values.setdefault("name", f"connection {next(counter)}")
        # started, as after "Start syncing" (a new connection is a draft)
        values.setdefault("state", Connection.State.ACTIVE)
        return Connection.objects.create(
            account_a=account_a or make_account("hubspot"),
            account_b=account_b or make_account("google"),
            **values,
        )

    return make
