"""Widening a connection's scope asks for a full sync; narrowing does not."""

import pytest

from connections.models import Action, Condition, Connection, FieldMapping, Rule


def settled(conn: Connection) -> Connection:
    Connection.objects.filter(pk=conn.pk).update(needs_full_sync=False, full_sync_started=True)
    conn.refresh_from_db()
    return conn


def wants_full(conn: Connection) -> bool:
    conn.refresh_from_db()
    return conn.needs_full_sync and not conn.full_sync_started


@pytest.mark.django_db
def test_widening_changes_ask_for_a_full_sync_and_narrowing_ones_do_not(make_connection):
    conn = make_connection()
    rule = Rule.objects.create(connection=conn, direction="a_to_b")
    settled(conn)

    cond = Condition.objects.create(rule=rule, field="company", operator="eq", value="ACME")
    assert not wants_full(conn)  # a new condition only narrows

    cond.value = "Initech"
    cond.save()
    assert wants_full(conn)  # a changed condition may match more

    settled(conn)
    cond.delete()
    assert wants_full(conn)

    settled(conn)
    rule.enabled = False
    rule.save()
    assert not wants_full(conn)
    rule.enabled = True
    rule.save()
    assert wants_full(conn)

    settled(conn)
    Action.objects.create(rule=rule, kind="add_tag", value="From sync")
    assert wants_full(conn)

    settled(conn)
    FieldMapping.objects.create(connection=conn, field_a="phone", field_b="phone")
    assert wants_full(conn)

    settled(conn)
    conn.direction = "a_to_b"
    conn.save()
    assert not wants_full(conn)
    conn.direction = "two_way"
    conn.save()
    assert wants_full(conn)
