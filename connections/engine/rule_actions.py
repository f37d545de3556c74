"""What rules and unsubscribes do to the target contact: tags and set fields. Pure.

A rule's actions run on the target of its direction while the source
contact matches it. Tags a rule added are remembered on the binding
(``rule_tags``) when the rule undoes them on unmatch, so only those tags are
removed when the contact stops matching.
"""

from __future__ import annotations

from connectors.base import Contact

from .context import A, B, Options, other
from .merge import set_value
from .rules import ActionSpec, RuleSpec, Scope
from .state import Change, LinkState, PairPlan, SideWrite, field_value, has_tag


def apply_actions(
    write: SideWrite,
    target_contact: Contact,
    scope: Scope,
    target: str,
    state: LinkState,
    options: Options,
) -> None:
    """Run the actions of the rules ``scope`` matched on the target contact,
    and undo the remembered tags of the rules it stopped matching."""
    tags = set(target_contact.tags)
    for rule in scope.matched:
        key = str(rule.id)
        for action in rule.actions:
            apply_action(write, target_contact, tags, action, rule, options, target, state, key)
    for rule in scope.unmatched:
        key = str(rule.id)
        if not rule.undo_on_unmatch or key not in state.rule_tags:
            continue
        for tag in state.rule_tags.pop(key):
            if has_tag(tags, tag) and not tag_still_wanted(tag, scope):
                write.remove_tags.add(tag)
                write.add_tags.discard(tag)
                tags = {t for t in tags if t.casefold() != tag.casefold()}
                write.reasons.append(f"stopped matching {rule.label or 'rule'} → undo tag “{tag}”")
                write.changes.append(Change("tags", tag, None))
    target_contact.tags = frozenset(tags)


def tag_still_wanted(tag: str, scope: Scope) -> bool:
    return any(
        a.kind == "add_tag" and str(a.value).casefold() == tag.casefold()
        for r in scope.matched
        for a in r.actions
    )


def apply_action(
    write: SideWrite,
    target_contact: Contact,
    tags: set[str],
    action: ActionSpec,
    rule: RuleSpec,
    options: Options,
    target: str,
    state: LinkState,
    key: str,
) -> None:
    label = rule.label or "rule"
    if action.kind in ("add_tag", "remove_tag"):
        tag = str(action.value)
        if not options.can_tag(target):
            write.reasons.append(f"{label}: {options.name(target)} cannot be tagged")
            return
        if action.kind == "add_tag":
            if rule.undo_on_unmatch:
                recorded = state.rule_tags.setdefault(key, [])
                if tag not in recorded:
                    recorded.append(tag)
            if not has_tag(tags, tag):
                write.add_tags.add(tag)
                write.remove_tags.discard(tag)
                tags.add(tag)
                write.reasons.append(f"{label} → add tag “{tag}”")
                write.changes.append(Change("tags", None, tag))
        elif has_tag(tags, tag):
            write.remove_tags.add(tag)
            write.add_tags.discard(tag)
            tags.difference_update({t for t in tags if t.casefold() == tag.casefold()})
            write.reasons.append(f"{label} → remove tag “{tag}”")
            write.changes.append(Change("tags", tag, None))
        return
    if action.field is None:
        return
    current = field_value(target_contact, action.field)
    if current != action.value:
        set_value(write, target_contact, action.field, action.value, current)
        write.reasons.append(f"{label} → set {action.field.label}")


def apply_unsubscribe(
    plan: PairPlan,
    contacts: dict[str, Contact | None],
    state: LinkState,
    options: Options,
    new_contacts: dict[str, Contact],
) -> None:
    """An unsubscribe seen on one side tags the counterpart, once: the side is
    remembered in ``unsubscribed_on``, so a tag a person removed stays removed."""
    if not options.sync_unsubscribes:
        return
    for side in (A, B):
        contact = contacts[side]
        if contact is None or not contact.unsubscribed or side in state.unsubscribed_on:
            continue
        target = other(side)
        if not options.can_tag(target) or target not in new_contacts:
            continue
        target_contact = new_contacts[target]
        state.unsubscribed_on += side
        if has_tag(target_contact.tags, options.unsubscribe_tag):
            continue
        write = plan.write(target, contacts[target], None)
        write.add_tags.add(options.unsubscribe_tag)
        target_contact.tags = frozenset(set(target_contact.tags) | {options.unsubscribe_tag})
        write.reasons.append(
            f"unsubscribed in {options.name(side)} → tagged “{options.unsubscribe_tag}”"
        )
        write.changes.append(Change("tags", None, options.unsubscribe_tag))


def apply_rules(
    plan: PairPlan,
    contacts: dict[str, Contact | None],
    new: dict[str, Contact],
    scopes: dict[str, Scope],
    options: Options,
) -> None:
    """The rules phase of a bound pair: each direction's actions on its
    target, then unsubscribes. ``new`` holds the contacts as merged."""
    state = plan.link
    for source in (A, B):
        if scopes[source].in_scope or scopes[source].unmatched:
            target = other(source)
            write = plan.write(target, contacts[target], None)
            apply_actions(write, new[target], scopes[source], target, state, options)
    apply_unsubscribe(plan, contacts, state, options, new_contacts=new)
