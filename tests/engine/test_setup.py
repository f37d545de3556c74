"""Setting up a run from the connection's rows: a mapping that cannot work
with the fields the apps have now is skipped, and the run says so."""

from __future__ import annotations

import pytest

from connections.engine.setup import mapping_specs
from connections.models import Direction, FieldMapping
from connectors.base import Field, FieldType

pytestmark = pytest.mark.django_db

FIELDS = [
    Field("firstname", "First name", FieldType.TEXT),
    Field("score", "Score", FieldType.NUMBER),
    Field("birthday", "Birthday", FieldType.DATE),
]
BY_KEY = {"a": {f.key: f for f in FIELDS}, "b": {f.key: f for f in FIELDS}}


@pytest.fixture
def conn(make_account, make_connection):
    return make_connection(
        make_account("hubspot", fields=FIELDS), make_account("mailchimp", fields=FIELDS)
    )


def test_a_mapping_whose_types_no_longer_fit_is_skipped_with_a_warning(conn):
    # made before validation existed (or the app changed a field's type since)
    FieldMapping.objects.create(connection=conn, field_a="birthday", field_b="score")
    FieldMapping.objects.create(connection=conn, field_a="firstname", field_b="firstname")
    warnings: list[str] = []
    specs = mapping_specs(conn, BY_KEY, warnings)
    assert [(s.field_a.key, s.field_b.key) for s in specs] == [("firstname", "firstname")]
    assert warnings == [
        "mapping Birthday ↔ Score: a date field cannot be written into a number field; skipped"
    ]


def test_a_mapping_the_connections_direction_turns_off_is_no_warning(conn):
    conn.direction = Direction.A_TO_B
    FieldMapping.objects.create(
        connection=conn, field_a="firstname", field_b="firstname", direction=Direction.B_TO_A
    )
    warnings: list[str] = []
    assert mapping_specs(conn, BY_KEY, warnings) == []
    assert warnings == []


class Schema:
    """An app as far as the schema goes: how often it was asked."""

    def __init__(self) -> None:
        self.reads = 0
        self.hint: list[Field] | None = None

    def fields(self) -> list[Field]:
        self.reads += 1
        return list(FIELDS)

    def use_schema(self, fields: list[Field]) -> None:
        self.hint = list(fields)


@pytest.mark.parametrize(
    ("age_minutes", "full", "reads"),
    [(1, True, 0), (10, True, 1), (10, False, 0), (90, False, 1)],
)
def test_the_schema_is_read_again_when_old_and_on_a_full_sync_after_five_minutes(
    conn, age_minutes, full, reads
):
    import datetime as dt

    from django.utils import timezone

    from connections.engine.setup import refresh_fields

    checked = timezone.now() - dt.timedelta(minutes=age_minutes)
    for account in (conn.account_a, conn.account_b):
        account.checked_at = checked
    apps = {"a": Schema(), "b": Schema()}
    fields = refresh_fields(conn, apps, full=full)  # type: ignore[arg-type]
    assert [apps[s].reads for s in "ab"] == [reads, reads]
    assert set(fields["a"]) == {f.key for f in FIELDS}
