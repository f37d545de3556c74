"""A configuration change that widens a connection's scope asks for a full
sync, so contacts that were out of scope are found (DESIGN.md §3).

Widening: a rule added or enabled, a condition changed or removed, an action
added or changed (it must reach contacts already in sync), a mapping added or
enabled, the direction opened to two-way. Narrowing changes (a new condition,
a rule disabled, a mapping removed) need no full read.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from .models import Action, Condition, Connection, Direction, FieldMapping, Rule


def _widened(connection_id: int | None) -> None:
    if connection_id:
        Connection.request_full_sync(connection_id)


@receiver(post_save, sender=Rule)
def rule_saved(sender: Any, instance: Rule, created: bool, **kwargs: Any) -> None:
    if instance.enabled and (created or getattr(instance, "_was_disabled", False)):
        _widened(instance.connection_id)


@receiver(pre_save, sender=Rule)
def rule_before_save(sender: Any, instance: Rule, **kwargs: Any) -> None:
    if instance.pk:
        before = Rule.objects.filter(pk=instance.pk).values_list("enabled", flat=True).first()
        instance._was_disabled = before is False


@receiver(post_save, sender=Condition)
def condition_saved(sender: Any, instance: Condition, created: bool, **kwargs: Any) -> None:
    if not created:
        _widened(instance.rule.connection_id)


@receiver(post_delete, sender=Condition)
def condition_deleted(sender: Any, instance: Condition, **kwargs: Any) -> None:
    rule = Rule.objects.filter(pk=instance.rule_id).values_list("connection_id", flat=True)
    _widened(rule.first())


@receiver(post_save, sender=Action)
def action_saved(sender: Any, instance: Action, **kwargs: Any) -> None:
    _widened(instance.rule.connection_id)


@receiver(post_save, sender=FieldMapping)
def mapping_saved(sender: Any, instance: FieldMapping, created: bool, **kwargs: Any) -> None:
    if instance.enabled and not instance.is_default:
        _widened(instance.connection_id)


@receiver(pre_save, sender=Connection)
def connection_before_save(sender: Any, instance: Connection, **kwargs: Any) -> None:
    if not instance.pk:
        return
    before = Connection.objects.filter(pk=instance.pk).values("direction", "state").first()
    if before is None:
        return
    opened = before["direction"] != instance.direction and instance.direction == Direction.TWO_WAY
    if opened:
        instance.needs_full_sync = True
        instance.full_sync_started = False
