"""Reading an account's identity, fields and setting choices from its app."""

from __future__ import annotations

import logging
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from connectors.base import AccountInfo, AuthError, ConnectorError, PermanentError, TransientError
from connectors.http import shorten

from . import actions
from .models import Account

log = logging.getLogger(__name__)

#: longest remote error text kept as a status reason or shown by Test connection
MAX_REASON = 300


def _scrub(message: str, account: Account) -> str:
    """An app may echo the credential back in an error; never pass it on.
    Whatever the remote host said is cut short (the HTTP layer already turned
    HTML pages into "HTTP 502 from <host>"); the admin escapes it."""
    creds = account.get_credentials()
    for secret in (creds.access_token, creds.refresh_token, creds.api_key):
        if secret and len(secret) >= 6:
            message = message.replace(secret, "[hidden]")
    return shorten(message, MAX_REASON)


def _record(account: Account, **values: object) -> None:
    Account.objects.filter(pk=account.pk).update(**values)
    for key, value in values.items():
        setattr(account, key, value)


def refresh_account(account: Account, *, user: Any = None) -> AccountInfo:
    """Call the app ("Test connection"): check the credentials, read the field
    schema and the per-side setting choices, and store them on the account.
    Where it works, the connections it stopped for re-authorization resume
    (``actions.account_recovered``; ``user`` is who pressed the button).

    Raises the connector's error (its message scrubbed of secrets) after
    recording the account's status.
    """
    now = timezone.now()
    try:
        connector = account.build_connector()
        info = connector.check()
        fields = connector.fields()
        options = connector.side_options()
    except AuthError as exc:
        reason = _scrub(exc.message or str(exc), account)
        actions.mark_account_needs_reauth(account, reason)
        _record(account, checked_at=now)
        log.info("account %s needs re-authorization", account.pk)
        raise AuthError(reason, status=exc.status, code=exc.code) from None
    except ConnectorError as exc:
        reason = _scrub(str(exc), account)
        actions.record_account_check(
            account, Account.Status.ERROR, reason, user=user, checked_at=now
        )
        log.info("account %s check failed", account.pk)
        kind = PermanentError if exc.permanent else TransientError
        raise kind(reason, status=exc.status, code=exc.code) from None

    values = {
        "remote_id": str(info.remote_id),
        "schema": Account.dump_schema(fields),
        "options": {key: [list(choice) for choice in choices] for key, choices in options.items()},
    }
    try:
        with transaction.atomic():
            actions.record_account_check(
                account, Account.Status.OK, user=user, checked_at=now, **values
            )
    except IntegrityError:
        other = (
            Account.objects.filter(
                connector=account.connector,
                remote_id=str(info.remote_id),
                base_url=account.base_url,
            )
            .exclude(pk=account.pk)
            .first()
        )
        reason = f"This {account.get_connector_display()} account is already set up as “{other}”."
        actions.record_account_check(
            account, Account.Status.ERROR, reason, user=user, checked_at=now
        )
        raise ConnectorError(reason) from None
    actions.account_recovered(account, user=user)
    return info
