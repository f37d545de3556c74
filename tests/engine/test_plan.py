"""The engine's decisions, as pure functions: no HTTP, no database."""

from __future__ import annotations

import datetime as dt

import pytest

from connections.engine.names import join_name, split_name
from connections.engine.plan import (
    A,
    B,
    Context,
    LinkState,
    MappingSpec,
    Options,
    is_echo,
    plan_pair,
    snapshot,
)
from connections.engine.rules import ActionSpec, ConditionSpec, RuleSpec
from connections.engine.types import can_flow, convert, effective_flows
from connectors.base import Contact, Field, FieldType, full_name_field

EMAIL_A = Field("email", "Email", FieldType.EMAIL)
NAME_A = Field("name", "Name", FieldType.TEXT)
PHONE_A = Field("phone", "Phone", FieldType.PHONE)
STAGE_A = Field("stage", "Lead stage", FieldType.CHOICE, choices=("Lead", "MQL", "SQL"))
SCORE_A = Field("score", "CQL score", FieldType.NUMBER)

EMAIL_B = Field("email_address", "Email", FieldType.EMAIL)
FIRST_B = Field("FNAME", "First name", FieldType.TEXT)
LAST_B = Field("LNAME", "Last name", FieldType.TEXT)
FULL_B = full_name_field("FNAME", "LNAME")
PHONE_B = Field("PHONE", "Phone", FieldType.PHONE)
SCORE_TEXT_B = Field("SCORE", "Score", FieldType.TEXT)
STATUS_B = Field("status", "Status", FieldType.CHOICE, read_only=True)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def mappings(direction: str = "two_way") -> list[MappingSpec]:
    out = []
    for fa, fb in ((NAME_A, FULL_B), (PHONE_A, PHONE_B), (SCORE_A, SCORE_TEXT_B)):
        a_to_b, b_to_a = effective_flows(fa, fb, "two_way", direction)
        out.append(MappingSpec(fa, fb, a_to_b, b_to_a))
    return out


def default_rules(**kw) -> list[RuleSpec]:
    return [RuleSpec(1, A, **kw.get("a", {})), RuleSpec(2, B, **kw.get("b", {}))]


def ctx(**options) -> Context:
    rules = options.pop("rules", None)
    direction = options.get("direction", "two_way")
    return Context(mappings(direction), rules or default_rules(), Options(**options))


def drift(
    cid="1",
    email="ann@example.com",
    name="Ann Lee",
    phone=None,
    score=None,
    tags=(),
    updated=T0,
    **kw,
):
    fields = {"name": name, "phone": phone, "score": score}
    return Contact(cid, email, fields, frozenset(tags), updated_at=updated, **kw)


def chimp(
    cid="h1",
    email="ann@example.com",
    first="Ann",
    last="Lee",
    phone=None,
    tags=(),
    updated=T0,
    **kw,
):
    fields = {"FNAME": first, "LNAME": last, "PHONE": phone}
    return Contact(cid, email, fields, frozenset(tags), updated_at=updated, **kw)


def synced(a: Contact, b: Contact, c: Context) -> LinkState:
    """The link as it stands after a sync that left ``a`` and ``b`` as they are."""
    return LinkState(
        a.id, b.id, "ann@example.com", snapshot(a, c.tracked[A]), snapshot(b, c.tracked[B])
    )


# ------------------------------------------------------------ matching


def test_a_new_contact_is_created_on_the_other_side_with_its_mapped_fields():
    plan = plan_pair(drift(phone="+1 555"), None, None, ctx())
    write = plan.writes[B]
    assert write.create
    assert write.email == "ann@example.com"
    assert write.fields == {"FNAME": "Ann", "LNAME": "Lee", "PHONE": "+1 555"}
    assert plan.outcome == "created"
    assert plan.link.status == "pending"
    assert "new in A" in plan.events[0].reason


def test_a_contact_without_email_is_excluded_when_avoiding_duplicates():
    plan = plan_pair(drift(email=None), None, None, ctx())
    assert plan.writes == {}
    assert plan.outcome == "excluded"
    assert plan.link.status == "excluded"
    assert "no email" in plan.events[0].reason


def test_a_contact_without_email_is_created_when_duplicates_are_allowed():
    plan = plan_pair(drift(email=None), None, None, ctx(avoid_duplicates=False))
    assert plan.writes[B].create


def test_a_binding_survives_an_email_change():
    c = ctx()
    a, b = drift(), chimp()
    link = synced(a, b, c)
    plan = plan_pair(drift(email="ann.new@example.com"), b, link, c)
    assert plan.link.id_a == "1"
    assert plan.link.id_b == "h1"
    assert plan.link.email == "ann.new@example.com"


# ------------------------------------------------------------- merging


def test_a_field_changed_on_one_side_is_copied_to_the_other():
    c = ctx()
    a, b = drift(phone="1"), chimp(phone="1")
    plan = plan_pair(drift(phone="2"), b, synced(a, b, c), c)
    assert plan.writes[B].fields == {"PHONE": "2"}
    assert A not in plan.writes
    assert plan.link.base_b["PHONE"] == "2"


def test_both_sides_changed_to_the_same_value_needs_no_write():
    c = ctx()
    a, b = drift(phone="1"), chimp(phone="1")
    plan = plan_pair(drift(phone="2"), chimp(phone="2"), synced(a, b, c), c)
    assert plan.writes == {}


@pytest.mark.parametrize(
    ("policy", "updated_a", "updated_b", "winner_value", "written_side"),
    [
        ("a_wins", T0, T0 + dt.timedelta(hours=1), "from-a", B),
        ("b_wins", T0 + dt.timedelta(hours=1), T0, "from-b", A),
        ("most_recent", T0, T0 + dt.timedelta(hours=1), "from-b", A),
        ("most_recent", T0 + dt.timedelta(hours=1), T0, "from-a", B),
    ],
)
def test_a_conflict_is_resolved_by_the_policy_and_both_values_are_recorded(
    policy, updated_a, updated_b, winner_value, written_side
):
    c = ctx(conflict_policy=policy)
    a, b = drift(phone="1"), chimp(phone="1")
    plan = plan_pair(
        drift(phone="from-a", updated=updated_a),
        chimp(phone="from-b", updated=updated_b),
        synced(a, b, c),
        c,
    )
    assert list(plan.writes) == [written_side]
    key = "PHONE" if written_side == B else "phone"
    assert plan.writes[written_side].fields == {key: winner_value}
    change = plan.events[0].changes[0]
    assert change["note"].startswith("conflict")
    assert {change["new"], change["other"]} == {"from-a", "from-b"}


def test_at_first_match_the_winning_side_wins():
    plan = plan_pair(drift(phone="a-phone"), chimp(phone="b-phone"), None, ctx())
    assert plan.writes[B].fields == {"PHONE": "a-phone"}


def test_at_first_match_an_empty_value_never_erases_a_filled_one():
    plan = plan_pair(drift(phone=None), chimp(phone="b-phone"), None, ctx())
    assert plan.writes[A].fields == {"phone": "b-phone"}
    assert B not in plan.writes


def test_after_the_first_match_clearing_a_field_clears_it_on_the_other_side():
    c = ctx()
    a, b = drift(phone="1"), chimp(phone="1")
    plan = plan_pair(drift(phone=None), b, synced(a, b, c), c)
    assert plan.writes[B].fields == {"PHONE": None}


# --------------------------------------------------------------- echoes


def test_a_contact_that_comes_back_with_what_we_wrote_is_an_echo():
    c = ctx()
    first = plan_pair(drift(phone="2"), None, None, c)
    link = first.link
    link.id_b = "h9"
    echoed = chimp(cid="h9", phone="2")
    assert is_echo(echoed, link, B, c)
    again = plan_pair(drift(phone="2"), echoed, link, c)
    assert again.writes == {}


def test_one_change_produces_exactly_one_write_per_target():
    c = ctx()
    a, b = drift(phone="1"), chimp(phone="1")
    plan = plan_pair(drift(phone="2", name="Ann Leigh"), b, synced(a, b, c), c)
    assert list(plan.writes) == [B]
    assert plan.writes[B].fields == {"PHONE": "2", "LNAME": "Leigh"}


# ---------------------------------------------------------------- rules


VIP = ConditionSpec("has_tag", value="VIP")


def test_a_contact_out_of_every_rule_is_not_created():
    rules = default_rules(a={"conditions": (VIP,)})
    plan = plan_pair(drift(), None, None, ctx(rules=rules))
    assert plan.writes == {}
    assert plan.outcome == "out_of_scope"


def test_a_contact_matching_any_rule_is_created_and_the_rule_actions_applied():
    rules = [
        RuleSpec(1, A, (VIP,), (ActionSpec("add_tag", "From Drift"),)),
        RuleSpec(3, A, (ConditionSpec("gte", SCORE_A, "2"),), (ActionSpec("add_tag", "Hot"),)),
    ]
    plan = plan_pair(drift(score=3), None, None, ctx(rules=rules))
    assert plan.writes[B].add_tags == {"Hot"}
    assert "rule" in plan.events[0].reason


def test_conditions_inside_a_rule_are_anded():
    rule = RuleSpec(1, A, (VIP, ConditionSpec("eq", STAGE_A, "SQL")))
    contact = drift(tags=("VIP",))
    contact.fields["stage"] = "MQL"
    assert plan_pair(contact, None, None, ctx(rules=[rule])).writes == {}
    contact.fields["stage"] = "SQL"
    assert plan_pair(contact, None, None, ctx(rules=[rule])).writes[B].create


def test_exists_in_the_other_app_means_update_only():
    rule = RuleSpec(1, A, (ConditionSpec("exists_in_other"),))
    c = ctx(rules=[rule])
    assert plan_pair(drift(phone="2"), None, None, c).writes == {}
    plan = plan_pair(drift(phone="2"), chimp(phone=None), None, c)
    assert plan.writes[B].fields == {"PHONE": "2"}


def test_a_set_field_action_sets_the_target_field():
    action = ActionSpec("set_field", "MQL", Field("STAGE", "Stage", FieldType.TEXT))
    plan = plan_pair(drift(), None, None, ctx(rules=[RuleSpec(1, A, (), (action,))]))
    assert plan.writes[B].fields["STAGE"] == "MQL"


def test_undo_removes_the_rule_tag_when_a_contact_stops_matching():
    rule = RuleSpec(1, A, (VIP,), (ActionSpec("add_tag", "VIP in Drift"),), undo_on_unmatch=True)
    c = ctx(rules=[rule, RuleSpec(2, A)])
    a, b = drift(tags=("VIP",)), chimp()
    first = plan_pair(a, b, None, c)
    assert first.writes[B].add_tags == {"VIP in Drift"}
    link = first.link
    assert link.rule_tags == {"1": ["VIP in Drift"]}
    second = plan_pair(drift(tags=()), chimp(tags=("VIP in Drift",)), link, c)
    assert second.writes[B].remove_tags == {"VIP in Drift"}
    assert second.link.rule_tags == {}


def test_a_one_way_connection_never_writes_back():
    c = ctx(direction="a_to_b")
    a, b = drift(phone="1"), chimp(phone="1")
    plan = plan_pair(a, chimp(phone="2"), synced(a, b, c), c)
    assert plan.writes == {}
    assert plan_pair(None, chimp(cid="h2"), None, c).writes == {}


# --------------------------------------------------------- types, names


@pytest.mark.parametrize(
    ("src", "dst", "allowed"),
    [
        (FieldType.TEXT, FieldType.TEXT, True),
        (FieldType.NUMBER, FieldType.TEXT, True),
        (FieldType.TEXT, FieldType.NUMBER, False),
        (FieldType.CHOICE, FieldType.TEXT, True),
        (FieldType.DATE, FieldType.DATETIME, True),
        (FieldType.DATETIME, FieldType.DATE, True),
        (FieldType.BOOLEAN, FieldType.NUMBER, False),
        (FieldType.TEXT, FieldType.EMAIL, False),
    ],
)
def test_type_compatibility(src, dst, allowed):
    assert can_flow(Field("s", "S", src), Field("d", "D", dst)).allowed is allowed


def test_nothing_is_ever_written_into_a_read_only_field():
    assert not can_flow(Field("s", "S", FieldType.CHOICE), STATUS_B).allowed


def test_choice_to_choice_needs_every_source_option_on_the_target():
    small = Field("d", "D", FieldType.CHOICE, choices=("Lead",))
    assert not can_flow(STAGE_A, small).allowed
    assert can_flow(small, STAGE_A).allowed


def test_number_to_text_is_one_way_and_converted():
    c = ctx()
    plan = plan_pair(drift(score=3), chimp(), None, c)
    assert plan.writes[B].fields == {"SCORE": "3"}
    m = next(m for m in c.mappings if m.field_a is SCORE_A)
    assert m.a_to_b
    assert not m.b_to_a


def test_date_and_datetime_convert_both_ways():
    d = Field("d", "D", FieldType.DATE)
    t = Field("t", "T", FieldType.DATETIME)
    assert convert("2026-03-01", d, t) == "2026-03-01T00:00:00Z"
    assert convert("2026-03-01T15:00:00Z", t, d) == "2026-03-01"


@pytest.mark.parametrize(
    ("old_first", "old_last", "new_full", "expected"),
    [
        ("Ann", "Lee", "Ann Leigh", ("Ann", "Leigh")),
        ("Anna Maria", "van der Berg", "Anna Maria van den Berg", ("Anna Maria", "van den Berg")),
        ("Anna Maria", "van der Berg", "Annie van der Berg", ("Annie", "van der Berg")),
        (None, None, "Ludwig van Beethoven", ("Ludwig", "van Beethoven")),
        (None, None, "Maria de la Cruz", ("Maria", "de la Cruz")),
        (None, None, "Martin Luther King Jr.", ("Martin Luther", "King Jr.")),
        (None, None, "Cher", ("Cher", None)),
    ],
)
def test_a_full_name_splits_changing_only_what_changed(old_first, old_last, new_full, expected):
    assert split_name(new_full, old_first, old_last) == expected
    assert join_name(*expected) == new_full


def test_only_the_changed_part_of_a_full_name_is_written():
    c = ctx()
    a = drift(name="Anna Maria van der Berg")
    b = chimp(first="Anna Maria", last="van der Berg")
    plan = plan_pair(drift(name="Anna Maria van den Berg"), b, synced(a, b, c), c)
    assert plan.writes[B].fields == {"LNAME": "van den Berg"}


def test_a_split_name_joins_into_the_full_name():
    c = ctx()
    a, b = drift(), chimp()
    plan = plan_pair(a, chimp(last="Lee-Smith"), synced(a, b, c), c)
    assert plan.writes[A].fields == {"name": "Ann Lee-Smith"}


# ------------------------------------------------ deletions, unsubscribes


def test_a_deletion_tags_the_counterpart_and_marks_the_link():
    c = ctx(sync_deletions=True)
    a, b = drift(), chimp()
    plan = plan_pair(a, Contact("h1", deleted=True), synced(a, b, c), c)
    assert plan.writes[A].add_tags == {"DriftSync Trash"}
    assert plan.link.status == "deleted_b"
    assert plan.events[0].action == "trashed"


def test_a_deleted_contact_is_never_recreated():
    c = ctx(sync_deletions=True)
    a, b = drift(), chimp()
    link = plan_pair(a, Contact("h1", deleted=True), synced(a, b, c), c).link
    later = plan_pair(drift(phone="9"), None, link, c)
    assert later.writes == {}
    assert later.outcome == "skipped"


def test_a_deletion_tags_nothing_when_the_option_is_off():
    c = ctx()
    a, b = drift(), chimp()
    plan = plan_pair(a, Contact("h1", deleted=True), synced(a, b, c), c)
    assert plan.writes == {}
    assert plan.link.status == "deleted_b"


def test_an_unsubscribe_tags_the_counterpart_once():
    c = ctx(sync_unsubscribes=True)
    a, b = drift(), chimp()
    link = synced(a, b, c)
    plan = plan_pair(a, chimp(unsubscribed=True), link, c)
    assert plan.writes[A].add_tags == {"DriftSync Unsubscribes"}
    assert plan.link.status == "unsubscribed"
    again = plan_pair(
        drift(tags=("DriftSync Unsubscribes",)), chimp(unsubscribed=True), plan.link, c
    )
    assert again.writes == {}


def test_an_unsubscribe_is_not_tagged_where_the_target_cannot_tag():
    c = ctx(sync_unsubscribes=True, can_tag_a=False)
    a, b = drift(), chimp()
    assert plan_pair(a, chimp(unsubscribed=True), synced(a, b, c), c).writes == {}


PURE_MODULES = ("context", "merge", "names", "plan", "rule_actions", "rules", "state", "types")


@pytest.mark.parametrize("name", PURE_MODULES)
def test_the_decision_code_imports_nothing_that_touches_http_or_the_database(name):
    import importlib
    from pathlib import Path

    module = importlib.import_module(f"connections.engine.{name}")
    for forbidden in ("requests", "django.db", "connections.models", "connectors.http"):
        assert forbidden not in module.__dict__
    source = Path(module.__file__).read_text()
    for forbidden in ("import requests", "django.db", "connections.models", "connectors.http"):
        assert forbidden not in source
