"""driftsync's database state: accounts, connections and their configuration,
the contact bindings, and the audit of every run.

Workers write status through ``queryset.update(...)`` so a run never
overwrites what a person just saved in the admin.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from connectors import registry
from connectors.base import Connector, Credentials, Field, FieldType
from connectors.hosts import destination_problem

from .fields import EncryptedJSONField


def connector_choices() -> list[tuple[str, str]]:
    return registry.choices()


class Side(models.TextChoices):
    A = "a", "A"
    B = "b", "B"


# ----------------------------------------------------------------- accounts


class Account(models.Model):
    class Status(models.TextChoices):
        OK = "ok", "OK"
        NEEDS_REAUTH = "needs_reauth", "Needs re-authorization"
        ERROR = "error", "Error"
        UNCHECKED = "unchecked", "Not checked yet"

    class CredentialKind(models.TextChoices):
        OAUTH = "oauth", "OAuth (authorized in the app)"
        PASTED = "pasted", "Pasted token / API key"

    connector = models.CharField(max_length=40, choices=connector_choices)
    label = models.CharField(max_length=200)
    remote_id = models.CharField(
        max_length=200,
        blank=True,
        help_text="The app's own id: Drift org, Google user, Mailchimp login, HubSpot portal.",
    )
    base_url = models.URLField(
        blank=True,
        help_text="Leave empty for the real API. Set to point at a sandbox or a proxy.",
    )
    credential_kind = models.CharField(
        max_length=10, choices=CredentialKind.choices, default=CredentialKind.PASTED
    )
    credentials = EncryptedJSONField(blank=True, default=dict, editable=False)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.UNCHECKED)
    status_reason = models.TextField(blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    #: the app's field schema as last read (so the admin never calls an app to render a form)
    schema = models.JSONField(default=list, blank=True, editable=False)
    #: choices for per-side settings (audiences, contact groups) as last read
    options = models.JSONField(default=dict, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["connector", "label"]
        constraints = [
            models.UniqueConstraint(
                fields=["connector", "remote_id", "base_url"],
                condition=~Q(remote_id=""),
                name="account_unique_remote",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_connector_display()}: {self.label}"

    def clean(self) -> None:
        super().clean()
        if self.base_url and self.connector in registry.CONNECTORS:
            # the credentials follow the base URL: the vendor's hosts only
            # (``connectors.hosts``); the HTTP layer refuses the rest anyway
            problem = destination_problem(
                self.base_url, self.connector_class.vendor_hosts, self.get_connector_display()
            )
            if problem:
                raise ValidationError({"base_url": problem})

    @property
    def connector_class(self) -> type[Connector]:
        return registry.get(self.connector)

    def get_credentials(self) -> Credentials:
        return Credentials.from_dict(self.credentials)

    def set_credentials(self, credentials: Credentials) -> None:
        self.credentials = credentials.to_dict()

    @property
    def has_credentials(self) -> bool:
        creds = self.get_credentials()
        return bool(creds.access_token or creds.api_key)

    def credential_hint(self) -> str:
        """What the admin may show: kind and the last four characters."""
        creds = self.get_credentials()
        secret = creds.access_token or creds.api_key
        if not secret:
            return "none"
        return f"…{secret[-4:]}" if len(secret) > 12 else "set"

    def build_connector(self, settings_: dict[str, Any] | None = None) -> Connector:
        return self.connector_class(
            self.get_credentials(),
            settings_ or {},
            base_url=self.base_url or None,
            account_key=f"account-{self.pk}",
            refresh_hook=self._refresh_hook,
        )

    def _refresh_hook(self, stale_token: str, refresher: Any) -> Credentials:
        """Refresh single-flight across processes: under a row lock, reuse the
        stored tokens when another worker already refreshed them."""
        from connectors.base import AuthError

        with transaction.atomic():
            row = Account.objects.select_for_update().get(pk=self.pk)
            current = row.get_credentials()
            if current.access_token and current.access_token != stale_token:
                self.credentials = row.credentials
                return current
            try:
                fresh = refresher(current)
            except AuthError as exc:
                from .actions import mark_account_needs_reauth

                mark_account_needs_reauth(self, str(exc))
                raise
            Account.objects.filter(pk=self.pk).update(credentials=fresh.to_dict())
        self.credentials = fresh.to_dict()
        return fresh

    def schema_fields(self) -> list[Field]:
        out = []
        for item in self.schema or []:
            out.append(
                Field(
                    key=item["key"],
                    label=item["label"],
                    type=FieldType(item["type"]),
                    read_only=item.get("read_only", False),
                    choices=tuple(item.get("choices") or ()),
                    custom=item.get("custom", False),
                    semantic=item.get("semantic") or None,
                    multi_value=item.get("multi_value", False),
                    parts=tuple(item.get("parts") or ()),
                    native_type=item.get("native_type") or "",
                    native_format=item.get("native_format") or "",
                )
            )
        return out

    @staticmethod
    def dump_schema(fields: list[Field]) -> list[dict[str, Any]]:
        return [
            {
                "key": f.key,
                "label": f.label,
                "type": str(f.type),
                "read_only": f.read_only,
                "choices": list(f.choices),
                "custom": f.custom,
                "semantic": str(f.semantic) if f.semantic else None,
                "multi_value": f.multi_value,
                "parts": list(f.parts),
                **({"native_type": f.native_type} if f.native_type else {}),
                **({"native_format": f.native_format} if f.native_format else {}),
            }
            for f in fields
        ]


# -------------------------------------------------------------- connections


class Direction(models.TextChoices):
    TWO_WAY = "two_way", "Two-way (A ↔ B)"
    A_TO_B = "a_to_b", "One-way A → B"
    B_TO_A = "b_to_a", "One-way B → A"


def new_webhook_secret() -> str:
    return secrets.token_urlsafe(24)


class Connection(models.Model):
    class ConflictPolicy(models.TextChoices):
        A_WINS = "a_wins", "Side A wins"
        B_WINS = "b_wins", "Side B wins"
        MOST_RECENT = "most_recent", "Most recent change wins"

    class State(models.TextChoices):
        #: being set up: nothing reaches any app (a dry run may read) until
        #: a person starts it (``actions.start``)
        DRAFT = "draft", "Draft (not started)"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        NEEDS_REAUTH = "needs_reauth", "Needs re-authorization"
        ERROR = "error", "Error"

    name = models.CharField(max_length=200, unique=True)
    account_a = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="connections_a")
    account_b = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="connections_b")
    settings_a = models.JSONField(default=dict, blank=True, help_text="Per-side settings for A.")
    settings_b = models.JSONField(default=dict, blank=True, help_text="Per-side settings for B.")
    direction = models.CharField(
        max_length=10, choices=Direction.choices, default=Direction.TWO_WAY
    )
    conflict_policy = models.CharField(
        max_length=15, choices=ConflictPolicy.choices, default=ConflictPolicy.A_WINS
    )
    avoid_duplicates = models.BooleanField(
        default=True, help_text="Contacts without an email are excluded, never created."
    )
    sync_deletions = models.BooleanField(
        default=False,
        help_text="Tag the counterpart of a deleted contact for review. Nothing is deleted.",
    )
    trash_tag = models.CharField(max_length=100, default="DriftSync Trash")
    sync_unsubscribes = models.BooleanField(
        default=False, help_text="Tag the counterpart of a contact who unsubscribed."
    )
    unsubscribe_tag = models.CharField(max_length=100, default="DriftSync Unsubscribes")
    interval_minutes = models.PositiveIntegerField(
        default=15, help_text="How often the scheduler runs this sync (minutes, at least 1)."
    )
    state = models.CharField(max_length=15, choices=State.choices, default=State.DRAFT)
    state_reason = models.TextField(blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_synced_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty when the scheduler ran it.",
    )
    cursor_a = models.TextField(blank=True, editable=False)
    cursor_b = models.TextField(blank=True, editable=False)
    #: set when the connection is activated or widened; the next run reads everything
    needs_full_sync = models.BooleanField(default=True, editable=False)
    #: a full sync has begun reading (its cursors are from that read): after a
    #: crash the next run resumes it; a new request clears this to start over
    full_sync_started = models.BooleanField(default=False, editable=False)
    #: a trigger that arrived while a run was going; the worker runs again after
    run_requested_at = models.DateTimeField(null=True, blank=True, editable=False)
    #: the worker holding the run (lock row); see ``connections.locking``
    running_since = models.DateTimeField(null=True, blank=True, editable=False)
    #: the holder's last sign of life; a claim whose heartbeat stopped is free
    #: again after ``locking.stale_after()``
    heartbeat_at = models.DateTimeField(null=True, blank=True, editable=False)
    #: the token of the connection's webhook URL (``/webhooks/mailchimp/<token>/``)
    webhook_secret = models.CharField(
        max_length=64, default=new_webhook_secret, editable=False, unique=True
    )
    owners = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="owned_connections",
        limit_choices_to={"is_staff": True},
        help_text="Mailed when this connection needs re-authorization, stops on an error or "
        "keeps failing contacts, and when it recovers. Empty: every superuser.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(interval_minutes__gte=1), name="connection_interval_at_least_1"
            ),
            models.CheckConstraint(
                condition=~Q(trash_tag="") | Q(sync_deletions=False),
                name="connection_trash_tag_when_syncing_deletions",
            ),
            models.CheckConstraint(
                condition=~Q(unsubscribe_tag="") | Q(sync_unsubscribes=False),
                name="connection_unsubscribe_tag_when_syncing_unsubscribes",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def account(self, side: str) -> Account:
        return self.account_a if side == Side.A else self.account_b

    def side_settings(self, side: str) -> dict[str, Any]:
        return self.settings_a if side == Side.A else self.settings_b

    def cursor(self, side: str) -> str:
        return self.cursor_a if side == Side.A else self.cursor_b

    # -- what a person reads: the apps' names, not "A" and "B" --------------

    def side_name(self, side: str) -> str:
        """'HubSpot', or 'HubSpot (Sales portal)' when both sides are the same app."""
        account = self.account(side)
        name = account.get_connector_display()
        if self.account_a.connector == self.account_b.connector:
            return f"{name} ({account.label})"
        return name

    def arrow(self, direction: str) -> str:
        """'Drift → HubSpot' for a direction (a rule's, a mapping's, the connection's)."""
        a, b = self.side_name(Side.A), self.side_name(Side.B)
        if direction == Direction.A_TO_B:
            return f"{a} → {b}"
        if direction == Direction.B_TO_A:
            return f"{b} → {a}"
        return f"{a} ↔ {b}"

    def named(self, text: str) -> str:
        """A text that says 'A → B', 'B → A' or 'A ↔ B' (a direction as the
        engine's helpers describe it), in the apps' names."""
        for token, direction in (
            ("A → B", Direction.A_TO_B),
            ("B → A", Direction.B_TO_A),
            ("A ↔ B", Direction.TWO_WAY),
        ):
            text = text.replace(token, self.arrow(direction))
        return text

    def direction_choices(self, directions: list[str] | None = None) -> list[tuple[str, str]]:
        """A direction field's choices in the apps' names."""
        wanted = directions or [d.value for d in Direction]
        return [(d, self.arrow(d)) for d in wanted]

    def field_label(self, side: str, key: str) -> str:
        """A field's label as the app shows it ('Job Title'); the key when unknown."""
        for item in self.account(side).schema or []:
            if item.get("key") == key:
                return str(item.get("label") or key)
        return key

    @classmethod
    def request_full_sync(cls, pk: int) -> int:
        """Ask for a full read on the next run (activation, widened scope,
        "Full resync"). Safe while a run is going: that run will not clear it."""
        return cls.objects.filter(pk=pk).update(needs_full_sync=True, full_sync_started=False)

    def flows(self, source: str) -> bool:
        """Does data flow out of ``source`` under this connection's direction?"""
        if self.direction == Direction.TWO_WAY:
            return True
        return self.direction == (Direction.A_TO_B if source == Side.A else Direction.B_TO_A)


def _has_rule(part: models.Model) -> bool:
    """A condition or action of a rule being added (not saved yet)."""
    return part._meta.get_field("rule").is_cached(part)


def _side_fields(conn: Connection | None, side: str | None) -> dict[str, Field]:
    """The fields of one side of a connection, as last read from its app
    (empty when unknown: no connection yet, or the account never tested)."""
    if conn is None or side is None:
        return {}
    return {f.key: f for f in conn.account(side).schema_fields()}


class Rule(models.Model):
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="rules")
    name = models.CharField(max_length=200, blank=True)
    direction = models.CharField(
        max_length=10,
        choices=[(Direction.A_TO_B, "A → B"), (Direction.B_TO_A, "B → A")],
    )
    position = models.PositiveIntegerField(default=0)
    enabled = models.BooleanField(default=True)
    undo_on_unmatch = models.BooleanField(
        default=False,
        help_text="Undo this rule's tag actions when a contact stops matching it.",
    )

    class Meta:
        ordering = ["connection", "direction", "position", "pk"]

    def __str__(self) -> str:
        if self.name:
            return self.name
        if self.connection_id:
            arrow = self.connection.arrow(self.direction)
        else:
            arrow = "A → B" if self.direction == Direction.A_TO_B else "B → A"
        return f"{arrow} rule #{self.position + 1}"

    @property
    def target_side(self) -> str:
        return Side.B if self.source_side == Side.A else Side.A

    @property
    def source_side(self) -> str:
        return Side.A if self.direction == Direction.A_TO_B else Side.B


class Condition(models.Model):
    class Operator(models.TextChoices):
        HAS_TAG = "has_tag", "has tag"
        HAS_NO_TAG = "has_no_tag", "has no tag"
        EXISTS_IN_OTHER = "exists_in_other", "already exists in the other app (update only)"
        EQUALS = "eq", "equals"
        NOT_EQUALS = "ne", "does not equal"
        LT = "lt", "<"
        LTE = "lte", "<="
        GT = "gt", ">"
        GTE = "gte", ">="
        CONTAINS = "contains", "contains"
        IS_EMPTY = "empty", "is empty"
        IS_SET = "set", "is set"
        ONE_OF = "in", "is one of (comma separated)"

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="conditions")
    field = models.CharField(
        max_length=200, blank=True, help_text="Field of the source app (not for tag conditions)."
    )
    operator = models.CharField(max_length=20, choices=Operator.choices)
    value = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.field or 'contact'} {self.get_operator_display()} {self.value}".strip()

    def clean(self) -> None:
        from .validation import check_condition

        rule = getattr(self, "rule", None) if self.rule_id or _has_rule(self) else None
        conn = rule.connection if rule is not None and rule.connection_id else None
        fields = _side_fields(conn, rule.source_side if rule is not None else None)
        check_condition(self.operator, self.field or "", self.value or "", fields)


class Action(models.Model):
    class Kind(models.TextChoices):
        ADD_TAG = "add_tag", "add tag"
        REMOVE_TAG = "remove_tag", "remove tag"
        SET_FIELD = "set_field", "set field to value"

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="actions")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    field = models.CharField(
        max_length=200, blank=True, help_text="Field of the target app (for 'set field')."
    )
    value = models.CharField(max_length=500, help_text="The tag, or the field's new value.")

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        if self.kind == self.Kind.SET_FIELD:
            return f"set {self.field} = {self.value}"
        return f"{self.get_kind_display()} {self.value}"

    def clean(self) -> None:
        from .validation import check_action

        rule = getattr(self, "rule", None) if self.rule_id or _has_rule(self) else None
        conn = rule.connection if rule and rule.connection_id else None
        target = None
        if rule is not None:
            target = Side.B if rule.source_side == Side.A else Side.A
        fields = _side_fields(conn, target)
        can_tag = None
        if conn is not None and target is not None:
            from .config import capabilities_of

            caps = capabilities_of(conn.account(target).connector)
            can_tag = caps.tags if caps else None
        check_action(self.kind, self.field or "", self.value or "", fields, can_tag)


class FieldMapping(models.Model):
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="mappings")
    field_a = models.CharField(max_length=200)
    field_b = models.CharField(max_length=200)
    direction = models.CharField(
        max_length=10,
        choices=Direction.choices,
        default=Direction.TWO_WAY,
        help_text="Requested direction; type rules and the connection's direction may narrow it.",
    )
    enabled = models.BooleanField(default=True)
    is_default = models.BooleanField(default=False, editable=False)

    class Meta:
        ordering = ["connection", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "field_a"], name="mapping_unique_field_a"
            ),
            models.UniqueConstraint(
                fields=["connection", "field_b"], name="mapping_unique_field_b"
            ),
        ]

    #: set by the admin form on a row the person did not touch: its problems
    #: are shown on the page, not blocking the save of the other rows
    skip_type_check = False

    def __str__(self) -> str:
        if not self.connection_id:
            return f"{self.field_a} ↔ {self.field_b}"
        conn = self.connection
        return (
            f"{conn.field_label(Side.A, self.field_a)} ↔ {conn.field_label(Side.B, self.field_b)}"
        )

    def clean(self) -> None:
        from .validation import check_mapping

        if self.skip_type_check or not self.connection_id:
            return
        conn = self.connection
        check_mapping(
            self.field_a,
            self.field_b,
            self.direction,
            _side_fields(conn, Side.A),
            _side_fields(conn, Side.B),
            arrow=conn.arrow,
        )


# ------------------------------------------------------------ the bindings


class LinkStatus(models.TextChoices):
    IN_SYNC = "in_sync", "In sync"
    PENDING = "pending", "Being created"
    EXCLUDED = "excluded", "Excluded"
    DUPLICATE = "duplicate", "Duplicate"
    FAILING = "failing", "Failing"
    DELETED_A = "deleted_a", "Deleted on A"
    DELETED_B = "deleted_b", "Deleted on B"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"


class ContactLink(models.Model):
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="links")
    # NULL, not "", for "not on this side (yet)": the per-side unique
    # constraints must let many links lack an id on one side
    id_a = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    id_b = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    email = models.CharField(max_length=320, blank=True, help_text="Normalized (trimmed, folded).")
    #: last synced value of every mapped field, per side, in that side's field keys
    base_a = models.JSONField(default=dict, blank=True)
    base_b = models.JSONField(default=dict, blank=True)
    version_a = models.CharField(max_length=200, blank=True)
    version_b = models.CharField(max_length=200, blank=True)
    #: tags a rule added on the target, per rule id, for undo
    rule_tags = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=15, choices=LinkStatus.choices, default=LinkStatus.IN_SYNC, db_index=True
    )
    status_reason = models.TextField(blank=True)
    failure_count = models.PositiveIntegerField(default=0)
    retry_after = models.DateTimeField(null=True, blank=True)
    #: which side was unsubscribed / tagged for it
    unsubscribed_on = models.CharField(max_length=1, blank=True)
    #: a deletion's trash tag that has not landed yet: the side that gets it
    #: ("" when none is pending), why it has not landed, and its retries
    trash_pending = models.CharField(max_length=1, blank=True, db_index=True)
    trash_reason = models.TextField(blank=True)
    trash_attempts = models.PositiveIntegerField(default=0)
    trash_retry_after = models.DateTimeField(null=True, blank=True)
    #: a person confirmed in the admin: send it even past the mass-deletion guard
    trash_confirmed = models.BooleanField(default=False)
    first_synced_at = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "id_a"],
                condition=Q(id_a__isnull=False),
                name="link_unique_id_a",
            ),
            models.UniqueConstraint(
                fields=["connection", "id_b"],
                condition=Q(id_b__isnull=False),
                name="link_unique_id_b",
            ),
        ]
        indexes = [
            models.Index(fields=["connection", "email"], name="link_conn_email"),
            models.Index(fields=["connection", "status"], name="link_conn_status"),
        ]

    def __str__(self) -> str:
        return self.email or f"link #{self.pk}"

    def remote_id(self, side: str) -> str | None:
        return self.id_a if side == Side.A else self.id_b

    def base(self, side: str) -> dict[str, Any]:
        return self.base_a if side == Side.A else self.base_b


# ----------------------------------------------------------------- audit


class SyncRun(models.Model):
    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Sync now (admin)"
        COMMAND = "command", "Management command"
        WEBHOOK = "webhook", "Webhook"
        INITIAL = "initial", "Initial sync"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        PARTIAL = "partial", "Succeeded with failing contacts"
        FAILED = "failed", "Failed"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    dry_run = models.BooleanField(default=False)
    full = models.BooleanField(
        "full read",
        default=False,
        help_text="Yes: read every contact (initial sync, full resync). No: only the changes.",
    )
    #: {"a": {"scanned": n, "created": n, ...}, "b": {...}}
    counters = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["connection", "-started_at"], name="run_conn_started")]

    def __str__(self) -> str:
        return f"{self.connection} · {self.started_at:%Y-%m-%d %H:%M:%S}"

    def total(self, counter: str) -> int:
        return sum(int(side.get(counter, 0)) for side in (self.counters or {}).values())


class SyncEvent(models.Model):
    class Action(models.TextChoices):
        CREATED = "created", "Created"
        UPDATED = "updated", "Updated"
        TAGGED = "tagged", "Tagged"
        MATCHED = "matched", "Matched"
        UNCHANGED = "unchanged", "Unchanged"
        ECHO = "echo", "Echo skipped"
        EXCLUDED = "excluded", "Excluded"
        DUPLICATE = "duplicate", "Duplicate"
        FAILED = "failed", "Failed"
        TRASHED = "trashed", "Deleted → trash tag"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed → tag"
        SKIPPED = "skipped", "Skipped"

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="events")
    link = models.ForeignKey(
        ContactLink, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    email = models.CharField(max_length=320, blank=True, db_index=True)
    #: the side written (or examined, for skips)
    side = models.CharField(max_length=1, choices=Side.choices, blank=True)
    action = models.CharField(max_length=15, choices=Action.choices)
    #: [{"field": key, "old": v, "new": v, "other": v?, "note": str?}]
    changes = models.JSONField(default=list, blank=True)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["link", "created_at"], name="event_link_created")]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.email}".strip()


class WebhookEvent(models.Model):
    """Every delivery we receive, stored before anything else happens."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        REJECTED = "rejected", "Rejected"
        IGNORED = "ignored", "Ignored"

    source = models.CharField(max_length=40, choices=connector_choices)
    #: who sent it, for the rate limit of rejected deliveries: the client
    #: address (an IPv6 address by its /64), "" when unknown
    client = models.CharField(max_length=64, blank=True)
    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="webhook_events"
    )
    connection = models.ForeignKey(
        Connection, null=True, blank=True, on_delete=models.SET_NULL, related_name="webhook_events"
    )
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    event_type = models.CharField(max_length=60, blank=True)
    kind = models.CharField(max_length=20, blank=True, help_text="identified / updated / ...")
    contact_id = models.CharField(max_length=200, blank=True)
    #: an email change in an app that keys contacts by email: the contact's new id
    new_contact_id = models.CharField(
        max_length=200, blank=True, help_text="email_changed: the contact's id after the change"
    )
    #: when the app says the change happened (Drift's ``createdAt``), if the
    #: delivery carries it: a Drift change's time for "most recent change wins"
    occurred_at = models.DateTimeField(null=True, blank=True)
    email = models.CharField(max_length=320, blank=True, db_index=True)
    body = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    error = models.TextField(blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-pk"]
        indexes = [
            models.Index(fields=["account", "status", "id"], name="webhook_account_status"),
            # the rate limit of rejected deliveries, and the retention purge
            models.Index(fields=["status", "client", "received_at"], name="webhook_status_client"),
            models.Index(fields=["status", "received_at"], name="webhook_status_received"),
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.event_type or 'event'} #{self.pk}"


class Alert(models.Model):
    """One incident of one connection (``connections.alerts``): opened when
    the connection needs re-authorization, stops on an error or keeps failing
    contacts, resolved when it recovers. Its owners are mailed once when it
    opens (again at most once a day while it lasts) and once when it recovers."""

    class Kind(models.TextChoices):
        NEEDS_REAUTH = "needs_reauth", "Needs re-authorization"
        ERROR = "error", "Error"
        FAILING = "failing", "Contacts keep failing"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=15, choices=Kind.choices)
    reason = models.TextField(blank=True)
    opened_at = models.DateTimeField(default=timezone.now)
    #: the last mail about the problem (opening or reminder)
    last_mailed_at = models.DateTimeField(null=True, blank=True)
    #: the last mail saying it recovered
    recovery_mailed_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "kind"],
                condition=Q(resolved_at__isnull=True),
                name="alert_one_open_per_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.connection}: {self.get_kind_display()}"


from .pacing_store import PaceBucket  # noqa: E402, F401  (pacing shared by an account's workers)
