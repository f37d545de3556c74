"""Keep each connection's django-q2 schedule in step with the connection:
created, changed and removed with it (see ``connections.schedules``)."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import Connection
from .schedules import remove_schedule, sync_schedule


@receiver(post_save, sender=Connection, dispatch_uid="driftsync-connection-schedule-save")
def connection_saved(sender: type[Connection], instance: Connection, **kwargs: Any) -> None:
    if kwargs.get("raw"):
        return  # loaddata: ensure_schedules reconciles afterwards
    sync_schedule(instance)


@receiver(post_delete, sender=Connection, dispatch_uid="driftsync-connection-schedule-delete")
def connection_deleted(sender: type[Connection], instance: Connection, **kwargs: Any) -> None:
    remove_schedule(instance.pk)
