from __future__ import annotations

import pytest

from connections.config import apply_defaults, mapping_rows, option_support
from connections.models import Direction, FieldMapping, Rule
from connectors.base import Field, FieldType, Semantic

pytestmark = pytest.mark.django_db


def test_a_new_two_way_connection_gets_one_rule_per_direction_and_default_mappings(
    make_connection,
):
    connection = make_connection()
    apply_defaults(connection)
    rules = list(connection.rules.values_list("direction", "enabled"))
    assert sorted(rules) == [(Direction.A_TO_B, True), (Direction.B_TO_A, True)]
    assert not any(rule.conditions.exists() for rule in connection.rules.all())
    pairs = set(connection.mappings.values_list("field_a", "field_b", "is_default"))
    assert pairs == {
        ("email", "email", True),
        ("phone", "phone", True),
        ("company", "company", True),
        ("firstname", "firstname", True),
        ("lastname", "lastname", True),
    }


def test_apply_defaults_is_idempotent(make_connection):
    connection = make_connection()
    apply_defaults(connection)
    apply_defaults(connection)
    assert connection.rules.count() == 2
    assert connection.mappings.count() == 5


def test_a_one_way_connection_gets_only_its_rule(make_connection):
    connection = make_connection(direction=Direction.B_TO_A)
    apply_defaults(connection)
    assert list(connection.rules.values_list("direction", flat=True)) == [Direction.B_TO_A]


def test_defaults_never_map_a_field_twice_and_keep_one_way_pairs_one_way(
    make_account, make_connection
):
    a = make_account(
        fields=[
            Field("email", "Email", FieldType.EMAIL, semantic=Semantic.EMAIL),
            Field("site", "Website", FieldType.URL, semantic=Semantic.WEBSITE),
        ]
    )
    b = make_account(
        "google",
        fields=[
            Field("email", "Email", FieldType.EMAIL, semantic=Semantic.EMAIL),
            Field("site", "Website", FieldType.TEXT, semantic=Semantic.WEBSITE),
        ],
    )
    connection = make_connection(a, b)
    FieldMapping.objects.create(connection=connection, field_a="email", field_b="site")
    apply_defaults(connection)
    assert connection.mappings.count() == 1  # both pairs touch a field already mapped
    connection.mappings.all().delete()
    apply_defaults(connection)
    site = connection.mappings.get(field_a="site")
    assert site.direction == Direction.A_TO_B  # url → text is one-way


def test_deletions_work_where_one_side_detects_and_the_other_tags(make_account, make_connection):
    connection = make_connection(make_account("drift"), make_account("hubspot"))
    support = option_support(connection)
    deletions = support["sync_deletions"]
    assert deletions.possible
    assert len(deletions.ways) == 1
    assert deletions.ways[0].startswith("B → A")
    assert "Drift cannot detect deletions" in deletions.reason
    unsubscribes = support["sync_unsubscribes"]
    assert unsubscribes.ways[0].startswith("A → B")


def test_an_option_is_refused_with_a_reason_when_no_way_works(make_account, make_connection):
    connection = make_connection(make_account("google"), make_account("hubspot"))
    unsubscribes = option_support(connection)["sync_unsubscribes"]
    assert not unsubscribes.possible
    assert "Google Contacts cannot detect unsubscribes" in unsubscribes.reason
    assert "HubSpot cannot detect unsubscribes" in unsubscribes.reason


def test_the_connection_direction_limits_which_way_tags_are_written(make_account, make_connection):
    connection = make_connection(
        make_account("drift"), make_account("google"), direction=Direction.B_TO_A
    )
    unsubscribes = option_support(connection)["sync_unsubscribes"]
    assert not unsubscribes.possible
    assert "the connection does not sync A → B" in unsubscribes.reason


def test_mapping_rows_show_effective_direction_and_problems(make_account, make_connection):
    a = make_account(fields=[Field("score", "Score", FieldType.NUMBER)])
    b = make_account("google", fields=[Field("note", "Note", FieldType.TEXT)])
    connection = make_connection(a, b)
    FieldMapping.objects.create(connection=connection, field_a="score", field_b="note")
    FieldMapping.objects.create(connection=connection, field_a="gone", field_b="missing")
    rows = {row.mapping.field_a: row for row in mapping_rows(connection)}
    assert rows["score"].flows == "A → B"
    assert "one-way" in rows["score"].problem
    assert rows["gone"].flows == "not synced"
    assert "schema" in rows["gone"].problem


def test_rules_are_not_duplicated_when_one_exists(make_connection):
    connection = make_connection()
    Rule.objects.create(connection=connection, direction=Direction.A_TO_B, name="mine")
    apply_defaults(connection)
    assert connection.rules.filter(direction=Direction.A_TO_B).count() == 1
