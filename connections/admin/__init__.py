"""The configuration UI and the audit log, in plain Django admin.

Staff see and do what their model permissions allow: a view-only user can
audit runs and contacts but changes nothing. The audit tables are read-only
and paginate without counting whole tables.

One module a part of the UI: ``accounts``, ``connections`` (with its
``operations`` and ``dry_run`` pages), ``rules``, and the audit: ``audit``
(runs, events), ``links`` (contact links) and ``inbox`` (webhook deliveries); ``common``
holds what they share. Python builds each page's context; the HTML is in
``templates/admin/connections/``. Importing this package registers them all.
"""

from .accounts import AccountAdmin
from .audit import AlertAdmin, AuditAdmin, SyncEventAdmin, SyncRunAdmin
from .common import CappedCountPaginator, changes_table, connector_oauth_provider, folded
from .connections import ConnectionAdmin, FieldMappingInline
from .dry_run import COUNTER_ORDER, PREVIEW_LIMIT, QUIET_ACTIONS, DiffRow
from .inbox import WebhookEventAdmin
from .links import ContactLinkAdmin, FailureReasonFilter
from .operations import operation_url_name
from .rules import ActionInline, ConditionInline, RuleAdmin, RuleInline

__all__ = [
    "COUNTER_ORDER",
    "PREVIEW_LIMIT",
    "QUIET_ACTIONS",
    "AccountAdmin",
    "ActionInline",
    "AlertAdmin",
    "AuditAdmin",
    "CappedCountPaginator",
    "ConditionInline",
    "ConnectionAdmin",
    "ContactLinkAdmin",
    "DiffRow",
    "FailureReasonFilter",
    "FieldMappingInline",
    "RuleAdmin",
    "RuleInline",
    "SyncEventAdmin",
    "SyncRunAdmin",
    "WebhookEventAdmin",
    "changes_table",
    "connector_oauth_provider",
    "folded",
    "operation_url_name",
]
