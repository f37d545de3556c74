"""A mapping or a rule made any way (shell, data migration, a future API) is
held to the rules the admin form enforces: the models' clean()."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from connections.models import Action, Condition, Direction, FieldMapping, Rule
from connectors.base import Field, FieldType, Semantic

pytestmark = pytest.mark.django_db

FIELDS = [
    Field("email", "Email", FieldType.EMAIL, semantic=Semantic.EMAIL),
    Field("firstname", "First name", FieldType.TEXT),
    Field("score", "Score", FieldType.NUMBER),
    Field("birthday", "Birthday", FieldType.DATE),
    Field("id", "Record ID", FieldType.TEXT, read_only=True),
]


@pytest.fixture
def conn(make_account, make_connection):
    return make_connection(
        make_account("hubspot", fields=FIELDS), make_account("mailchimp", fields=FIELDS)
    )


def test_a_mapping_of_incompatible_types_is_refused_by_the_model(conn):
    mapping = FieldMapping(connection=conn, field_a="birthday", field_b="score")
    with pytest.raises(ValidationError, match="cannot be mapped"):
        mapping.full_clean()


def test_a_mapping_of_a_field_the_app_does_not_have_is_refused(conn):
    with pytest.raises(ValidationError, match="Pick fields the accounts have"):
        FieldMapping(connection=conn, field_a="nickname", field_b="firstname").full_clean()


def test_a_one_way_mapping_into_a_read_only_field_is_refused(conn):
    mapping = FieldMapping(
        connection=conn, field_a="firstname", field_b="id", direction=Direction.A_TO_B
    )
    with pytest.raises(ValidationError, match="'HubSpot → Mailchimp cannot work: "):
        mapping.full_clean()
    back = FieldMapping(
        connection=conn, field_a="id", field_b="firstname", direction=Direction.B_TO_A
    )
    with pytest.raises(ValidationError, match="'Mailchimp → HubSpot cannot work: "):
        back.full_clean()


def test_a_sound_mapping_passes(conn):
    FieldMapping(connection=conn, field_a="firstname", field_b="firstname").full_clean()


def test_a_condition_with_a_value_of_the_wrong_type_is_refused(conn):
    rule = Rule.objects.create(connection=conn, direction=Direction.A_TO_B)
    bad = Condition(rule=rule, operator=Condition.Operator.GT, field="score", value="lots")
    with pytest.raises(ValidationError) as caught:
        bad.full_clean()
    assert "Not a valid value for “Score”" in str(caught.value.message_dict["value"])
    ordered_text = Condition(
        rule=rule, operator=Condition.Operator.GT, field="firstname", value="a"
    )
    with pytest.raises(ValidationError, match="need a number or a date"):
        ordered_text.full_clean()
    Condition(rule=rule, operator=Condition.Operator.GT, field="score", value="10").full_clean()


def test_an_action_that_sets_a_read_only_field_or_an_empty_tag_is_refused(conn):
    rule = Rule.objects.create(connection=conn, direction=Direction.A_TO_B)
    with pytest.raises(ValidationError, match="read-only"):
        Action(rule=rule, kind=Action.Kind.SET_FIELD, field="id", value="1").full_clean()
    with pytest.raises(ValidationError, match="Which tag"):
        Action(rule=rule, kind=Action.Kind.ADD_TAG, value=" ").full_clean()
