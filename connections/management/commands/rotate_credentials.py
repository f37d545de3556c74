"""Re-encrypt every stored credential with the newest CREDENTIALS_KEY."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from connections.models import Account


class Command(BaseCommand):
    help = (
        "Re-encrypt all account credentials with the first key of CREDENTIALS_KEY. "
        "To rotate: put a new key in front (CREDENTIALS_KEY=new,old), run this, "
        "then drop the old key."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        count = 0
        with transaction.atomic():
            for account in Account.objects.select_for_update().only("pk", "credentials"):
                Account.objects.filter(pk=account.pk).update(credentials=account.credentials)
                count += 1
        self.stdout.write(f"re-encrypted the credentials of {count} account(s)")
