"""Each phase of ``plan_pair`` on its own: deletion, identity, scope, create,
merge, rules, finish. Pure: no HTTP, no database."""

from __future__ import annotations

import datetime as dt

from connections.engine.context import A, B
from connections.engine.merge import conflict_winner, merge_field
from connections.engine.plan import (
    finish_merge,
    plan_create,
    plan_deletion,
    plan_identity,
    plan_scopes,
)
from connections.engine.rule_actions import apply_rules
from connections.engine.rules import ActionSpec, ConditionSpec, RuleSpec, Scope
from connections.engine.state import LinkState, Outcome, PairPlan, snapshot
from connectors.base import Contact

from .test_plan import PHONE_A, T0, chimp, ctx, drift, mappings, synced


def fresh_plan(a: Contact | None, b: Contact | None, link: LinkState | None = None) -> PairPlan:
    return PairPlan(link.copy() if link else LinkState(), contacts={A: a, B: b})


def both(a: Contact, b: Contact) -> dict[str, Contact | None]:
    return {A: a, B: b}


# ---------------------------------------------------------------- deletion


def test_deletion_tags_the_counterpart_and_marks_the_binding():
    c = ctx(sync_deletions=True)
    a, b = drift(), chimp()
    plan = fresh_plan(None, b, synced(a, b, c))
    gone = Contact("1", deleted=True)
    assert plan_deletion(plan, both(gone, b), True, c.options)
    assert plan.outcome == Outcome.DELETED
    assert plan.link.status == "deleted_a"
    assert plan.writes[B].add_tags == {"DriftSync Trash"}
    assert plan.writes[B].id == "h1"
    assert [e.action for e in plan.events] == ["trashed"]


def test_deletion_of_a_contact_never_bound_is_skipped_without_a_write():
    plan = fresh_plan(None, None)
    assert plan_deletion(plan, both(Contact("1", deleted=True), None), False, ctx().options)
    assert plan.outcome == Outcome.SKIPPED
    assert plan.writes == {}


def test_deletion_with_sync_deletions_off_is_reported_but_tags_nothing():
    c = ctx(sync_deletions=False)
    a, b = drift(), chimp()
    plan = fresh_plan(None, b, synced(a, b, c))
    assert plan_deletion(plan, both(Contact("1", deleted=True), b), True, c.options)
    assert plan.writes == {}
    assert plan.events[0].action == "skipped"
    assert "Sync deletions" in plan.events[0].reason


def test_a_binding_marked_deleted_is_never_synced_again():
    a, b = drift(), chimp()
    link = synced(a, b, ctx())
    link.status = "deleted_b"
    plan = fresh_plan(a, None, link)
    assert plan_deletion(plan, both(a, None), True, ctx().options)
    assert plan.outcome == Outcome.SKIPPED


def test_deletion_phase_passes_a_pair_where_nothing_was_deleted():
    a, b = drift(), chimp()
    plan = fresh_plan(a, b)
    assert not plan_deletion(plan, both(a, b), False, ctx().options)
    assert plan.outcome == Outcome.UNCHANGED


# ---------------------------------------------------------------- identity


def test_identity_takes_ids_and_the_normalized_email():
    plan = fresh_plan(None, None)
    assert not plan_identity(plan, drift(email=" Ann@Example.COM "), chimp(), ctx().options)
    assert (plan.link.id_a, plan.link.id_b, plan.link.email) == ("1", "h1", "ann@example.com")


def test_identity_excludes_an_unbound_contact_without_email():
    plan = fresh_plan(None, None)
    assert plan_identity(plan, drift(email=None), None, ctx().options)
    assert plan.outcome == Outcome.EXCLUDED
    assert plan.link.status == "excluded"


def test_identity_keeps_a_binding_by_ids_when_the_email_is_gone():
    plan = fresh_plan(None, None)
    assert not plan_identity(plan, drift(email=None), chimp(email=None), ctx().options)


# ------------------------------------------------------------------- scope


def test_scope_follows_the_rules_and_the_connection_direction():
    tagged = RuleSpec(1, A, (ConditionSpec("has_tag", value="VIP"),))
    c = ctx(rules=[tagged, RuleSpec(2, B)])
    scopes = plan_scopes(both(drift(tags=("vip",)), chimp()), c)
    assert scopes[A].in_scope
    assert scopes[B].in_scope
    assert not plan_scopes(both(drift(), chimp()), c)[A].in_scope
    one_way = ctx(direction="a_to_b")
    assert not plan_scopes(both(drift(), chimp()), one_way)[B].in_scope


# ------------------------------------------------------------------ create


def test_create_writes_mapped_fields_and_bases_both_sides():
    c = ctx()
    plan = fresh_plan(drift(phone="+1 555"), None)
    contacts = both(drift(phone="+1 555"), None)
    plan_create(plan, contacts, plan_scopes(contacts, c), c)
    assert plan.outcome == Outcome.CREATED
    assert plan.writes[B].fields == {"FNAME": "Ann", "LNAME": "Lee", "PHONE": "+1 555"}
    assert plan.link.status == "pending"
    assert plan.link.base_b["PHONE"] == "+1 555"
    assert plan.contacts[B] is not None


def test_create_out_of_scope_writes_nothing_but_keeps_the_source_base():
    c = ctx(rules=[RuleSpec(1, A, (ConditionSpec("has_tag", value="VIP"),)), RuleSpec(2, B)])
    contacts = both(drift(), None)
    plan = fresh_plan(drift(), None)
    plan_create(plan, contacts, plan_scopes(contacts, c), c)
    assert plan.outcome == Outcome.OUT_OF_SCOPE
    assert plan.writes == {}
    assert plan.link.base_a == snapshot(drift(), c.tracked[A])


# ------------------------------------------------------------------- merge


def phone_mapping():
    return next(m for m in mappings() if m.field_a is PHONE_A)


def merge_phone(a: Contact, b: Contact, link: LinkState, **options) -> PairPlan:
    c = ctx(**options)
    plan = fresh_plan(a, b, link)
    new = {A: drift(phone=a.fields["phone"]), B: chimp(phone=b.fields["PHONE"])}
    scopes = {A: Scope([RuleSpec(1, A)]), B: Scope([RuleSpec(2, B)])}
    merge_field(plan, phone_mapping(), a, b, new, plan.link, scopes, c.options)
    return plan


def test_merge_copies_a_change_made_on_one_side_only():
    c = ctx()
    link = synced(drift(phone="1"), chimp(phone="1"), c)
    plan = merge_phone(drift(phone="2"), chimp(phone="1"), link)
    assert plan.writes[B].fields == {"PHONE": "2"}
    assert A not in plan.writes


def test_merge_of_a_conflict_follows_the_policy_and_records_both_values():
    c = ctx()
    link = synced(drift(phone="1"), chimp(phone="1"), c)
    plan = merge_phone(drift(phone="2"), chimp(phone="3"), link, conflict_policy="b_wins")
    assert plan.writes[A].fields == {"phone": "3"}
    change = plan.writes[A].changes[0].as_dict()
    assert change["other"] == "2"
    assert "conflict" in change["note"]


def test_merge_at_first_match_never_erases_a_filled_value_with_an_empty_one():
    plan = merge_phone(drift(phone=None), chimp(phone="9"), LinkState(), conflict_policy="a_wins")
    assert plan.writes[A].fields == {"phone": "9"}
    assert B not in plan.writes


def test_the_most_recent_change_wins_when_the_policy_says_so():
    c = ctx(conflict_policy="most_recent")
    later = T0 + dt.timedelta(minutes=5)
    assert conflict_winner(drift(updated=T0), chimp(updated=later), c.options)[0] == B
    assert conflict_winner(drift(updated=later), chimp(updated=T0), c.options)[0] == A


# ------------------------------------------------------------------- rules


def test_rules_add_their_tag_on_the_target_and_remember_it_for_undo():
    rule = RuleSpec(7, A, actions=(ActionSpec("add_tag", "From Drift"),), undo_on_unmatch=True)
    c = ctx(rules=[rule, RuleSpec(2, B)])
    a, b = drift(), chimp()
    plan = fresh_plan(a, b, synced(a, b, c))
    new = {A: drift(), B: chimp()}
    apply_rules(plan, both(a, b), new, plan_scopes(both(a, b), c), c.options)
    assert plan.writes[B].add_tags == {"From Drift"}
    assert plan.link.rule_tags == {"7": ["From Drift"]}
    assert "From Drift" in new[B].tags


def test_rules_undo_their_tag_when_the_contact_stops_matching():
    cond = (ConditionSpec("has_tag", value="VIP"),)
    rule = RuleSpec(7, A, cond, (ActionSpec("add_tag", "From Drift"),), undo_on_unmatch=True)
    c = ctx(rules=[rule, RuleSpec(2, B)])
    a, b = drift(), chimp(tags=("From Drift",))
    link = synced(a, b, c)
    link.rule_tags = {"7": ["From Drift"]}
    plan = fresh_plan(a, b, link)
    apply_rules(plan, both(a, b), {A: drift(), B: b}, plan_scopes(both(a, b), c), c.options)
    assert plan.writes[B].remove_tags == {"From Drift"}
    assert plan.link.rule_tags == {}


def test_rules_tag_an_unsubscribe_on_the_counterpart_once():
    c = ctx(sync_unsubscribes=True)
    a, b = drift(), chimp(unsubscribed=True)
    plan = fresh_plan(a, b, synced(a, b, c))
    apply_rules(plan, both(a, b), {A: drift(), B: chimp()}, plan_scopes(both(a, b), c), c.options)
    assert plan.writes[A].add_tags == {"DriftSync Unsubscribes"}
    assert plan.link.unsubscribed_on == "b"


# ------------------------------------------------------------------ finish


def test_finish_drops_empty_writes_and_calls_a_new_equal_pair_matched():
    c = ctx()
    a, b = drift(), chimp()
    plan = fresh_plan(a, b)
    plan.link.email = "ann@example.com"
    plan.write(B, b, None)  # a write that turned out empty
    finish_merge(plan, {A: a, B: b}, c, first_seen=True)
    assert plan.writes == {}
    assert plan.outcome == Outcome.MATCHED
    assert plan.events[0].reason == "matched by email ann@example.com; already equal"
    assert plan.link.base_a == snapshot(a, c.tracked[A])
    assert plan.link.status == "in_sync"


def test_finish_records_an_event_per_write_and_bases_from_the_merged_contacts():
    c = ctx()
    a, b = drift(phone="2"), chimp(phone="1")
    plan = fresh_plan(a, b, synced(drift(phone="1"), b, c))
    write = plan.write(B, b, None)
    write.fields["PHONE"] = "2"
    write.reasons.append("changed in A")
    merged_b = chimp(phone="2")
    finish_merge(plan, {A: a, B: merged_b}, c, first_seen=False)
    assert plan.outcome == Outcome.UPDATED
    assert [(e.side, e.action, e.reason) for e in plan.events] == [(B, "updated", "changed in A")]
    assert plan.link.base_b["PHONE"] == "2"


def test_outcome_values_are_the_strings_stored_before():
    assert {o.value for o in Outcome} == {
        "unchanged",
        "matched",
        "created",
        "updated",
        "deleted",
        "skipped",
        "excluded",
        "out_of_scope",
        "failed",
    }
    assert Outcome.OUT_OF_SCOPE == "out_of_scope"
