"""Admin forms: write-only credentials, per-side settings with the app's own
choices, and mapping/rule validation that says why something cannot work."""

from __future__ import annotations

import contextlib
from typing import Any

from django import forms

from connectors import registry
from connectors.base import Field, SideSetting

from . import actions
from .config import OPTIONS, option_support
from .models import Account, Action, Condition, Connection, Direction, FieldMapping, Side


def side_settings_of(account: Account) -> tuple[SideSetting, ...]:
    try:
        return registry.get(account.connector).side_settings
    except (KeyError, ImportError, AttributeError):
        return ()


def field_choices(fields: list[Field], current: str = "") -> list[tuple[str, str]]:
    choices = [("", "---------")]
    choices += [
        (f.key, f"{f.label} ({f.type}{', read-only' if f.read_only else ''})") for f in fields
    ]
    if current and current not in {f.key for f in fields}:
        choices.append((current, f"{current} (not in the account's fields)"))
    return choices


# ------------------------------------------------------------------ accounts


class AccountForm(forms.ModelForm):
    secret = forms.CharField(
        label="Token / API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: never shown again. Leave blank to keep the current one.",
    )

    base_url = forms.URLField(
        label="Base URL override",
        required=False,
        assume_scheme="https",
        help_text="Leave empty for the real API. The account's credentials are sent to this "
        "URL, so another host than the app's own is accepted only for the sandboxes: with "
        "DEBUG or DRIFTSYNC_ALLOW_BASE_URL_OVERRIDE on.",
    )

    class Meta:
        model = Account
        fields = ["connector", "label", "base_url"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and "connector" in self.fields:
            self.fields["connector"].disabled = True
            self.fields["connector"].help_text = "Add another account for another app."
        connector = self.instance.connector if self.instance.pk else ""
        if connector:
            with contextlib.suppress(KeyError, ImportError):
                self.fields["secret"].label = registry.get(connector).paste_label

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not self.instance.pk and not data.get("secret"):
            self.add_error(
                "secret",
                "Paste a token or API key, or use a “Connect with …” button to authorize instead.",
            )
        return data

    def save(self, commit: bool = True) -> Account:
        account = super().save(commit=False)
        secret = self.cleaned_data.get("secret")
        if secret:
            creds = account.get_credentials()
            creds.api_key = secret
            creds.access_token = creds.refresh_token = ""
            creds.expires_at = None
            account.set_credentials(creds)
            account.credential_kind = Account.CredentialKind.PASTED
            actions.credentials_replaced(account)
        if commit:
            account.save()
        return account


# --------------------------------------------------------------- connections


def setting_field_name(side: str, key: str) -> str:
    return f"setting_{side}__{key}"


class ConnectionForm(forms.ModelForm):
    class Meta:
        model = Connection
        # the per-side settings are the setting_* fields below; the state
        # changes only through the buttons (connections.actions)
        fields = [
            "name",
            "account_a",
            "account_b",
            "direction",
            "conflict_policy",
            "avoid_duplicates",
            "sync_deletions",
            "trash_tag",
            "sync_unsubscribes",
            "unsubscribe_tag",
            "interval_minutes",
        ]
        labels = {"account_a": "First app", "account_b": "Second app"}
        help_texts = {
            "account_a": "The account of one app to sync (Drift, say).",
            "account_b": "The account of the app to sync it with (HubSpot, say).",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setting_fields: dict[str, list[str]] = {Side.A: [], Side.B: []}
        if not self.instance.pk:
            # before the apps are chosen their names are not known: "first" and
            # "second" as the two fields above say, never "A" and "B"
            if "direction" in self.fields:
                self.fields["direction"].choices = [
                    (Direction.TWO_WAY, "Two-way: changes flow both ways"),
                    (Direction.A_TO_B, "One-way: first app → second app"),
                    (Direction.B_TO_A, "One-way: second app → first app"),
                ]
            return
        conn = self.instance
        if "account_a" in self.fields:
            self.fields["account_a"].label = "Account"
            self.fields["account_b"].label = "Account"
        if "direction" in self.fields:
            self.fields["direction"].choices = conn.direction_choices()
        if "conflict_policy" in self.fields:
            policy = Connection.ConflictPolicy
            self.fields["conflict_policy"].choices = [
                (policy.A_WINS, f"{conn.side_name(Side.A)} wins"),
                (policy.B_WINS, f"{conn.side_name(Side.B)} wins"),
                (policy.MOST_RECENT, policy.MOST_RECENT.label),
            ]
        # on an existing connection the per-side settings become real fields
        for side in (Side.A, Side.B):
            account = self.instance.account(side)
            current = self.instance.side_settings(side)
            for setting in side_settings_of(account):
                name = setting_field_name(side, setting.key)
                known = (account.options or {}).get(setting.key)
                help_text = setting.help_text
                if known:
                    choices = [("", "---------")] + [(str(v), str(label)) for v, label in known]
                    value = current.get(setting.key)
                    if value not in (None, "") and str(value) not in dict(choices):
                        choices.append((str(value), f"{value} (not listed by the app)"))
                    field: forms.Field = forms.ChoiceField(
                        label=setting.label, choices=choices, required=setting.required
                    )
                else:
                    field = forms.CharField(label=setting.label, required=setting.required)
                    help_text = (
                        f"{help_text} Test the account to choose from the app's list.".strip()
                    )
                field.help_text = help_text
                field.initial = current.get(setting.key, "")
                self.fields[name] = field
                self.setting_fields[side].append(name)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        account_a, account_b = data.get("account_a"), data.get("account_b")
        if account_a and account_b and account_a == account_b:
            self.add_error("account_b", "Choose another account than the first app's.")
            return data
        if not (account_a and account_b):
            return data
        probe = Connection(
            account_a=account_a,
            account_b=account_b,
            direction=data.get("direction") or Direction.TWO_WAY,
        )
        support = option_support(probe)
        for option in OPTIONS:
            if data.get(option) and not support[option].possible:
                label = self.fields[option].label
                self.add_error(
                    option, f"“{label}” cannot work for this connection: {support[option].reason}."
                )
        return data

    def save(self, commit: bool = True) -> Connection:
        connection = super().save(commit=False)
        for side in (Side.A, Side.B):
            if not self.setting_fields[side]:
                continue
            values = dict(connection.side_settings(side))
            for name in self.setting_fields[side]:
                key = name.split("__", 1)[1]
                value = self.cleaned_data.get(name)
                if value in (None, ""):
                    values.pop(key, None)
                else:
                    values[key] = value
            setattr(connection, f"settings_{side}", values)
        if commit:
            connection.save()
        return connection


# ------------------------------------------------------------------ mappings


class FieldMappingForm(forms.ModelForm):
    #: set per request by the inline (the parent connection, or None on add)
    connection: Connection | None = None

    class Meta:
        model = FieldMapping
        fields = ["field_a", "field_b", "direction", "enabled"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields_a: dict[str, Field] = {}
        self.fields_b: dict[str, Field] = {}
        if self.connection is not None and self.connection.pk:
            self.fields_a = {f.key: f for f in self.connection.account_a.schema_fields()}
            self.fields_b = {f.key: f for f in self.connection.account_b.schema_fields()}
            for side, known in ((Side.A, self.fields_a), (Side.B, self.fields_b)):
                name = f"field_{side}"
                if name not in self.fields:
                    continue  # read-only (a view-only person): shown in the apps' names
                current = getattr(self.instance, name, "") or ""
                self.fields[name] = forms.ChoiceField(
                    label=f"{self.connection.side_name(side)} field",
                    choices=field_choices(list(known.values()), current),
                )
            if "direction" in self.fields:
                self.fields["direction"].choices = self.connection.direction_choices()

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.instance.pk and not self.has_changed():
            # problems of untouched rows are shown, not blocking
            self.instance.skip_type_check = True
        # the rules themselves: FieldMapping.clean() (connections.validation)
        return data


class FieldMappingFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        # before Django's own unique check, which drops the duplicate rows' data
        self._check_fields_mapped_once()
        super().clean()

    def _check_fields_mapped_once(self) -> None:
        seen: dict[str, dict[str, int]] = {"field_a": {}, "field_b": {}}
        for index, form in enumerate(self.forms):
            if not hasattr(form, "cleaned_data") or form.cleaned_data.get("DELETE"):
                continue
            for name, side in (("field_a", "A"), ("field_b", "B")):
                key = form.cleaned_data.get(name)
                if not key:
                    continue
                if key in seen[name]:
                    form.add_error(
                        name,
                        f"“{key}” of side {side} is already mapped (row {seen[name][key] + 1}); "
                        "a field is mapped at most once per side.",
                    )
                else:
                    seen[name][key] = index


# --------------------------------------------------------------------- rules


class _RulePartForm(forms.ModelForm):
    #: set per request by the inline: the fields of the side this part reads or writes
    side_fields: dict[str, Field] = {}
    side_can_tag: bool | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.side_fields:
            current = getattr(self.instance, "field", "") or ""
            self.fields["field"] = forms.ChoiceField(
                label="Field",
                required=False,
                choices=field_choices(list(self.side_fields.values()), current),
                help_text=self.fields["field"].help_text,
            )


class ConditionForm(_RulePartForm):
    class Meta:
        model = Condition
        fields = ["operator", "field", "value"]

    def clean(self) -> dict[str, Any]:
        """Clears what the operator does not use; Condition.clean() (through
        the model validation) says what is wrong."""
        data = super().clean()
        op = data.get("operator")
        ops = Condition.Operator
        if op == ops.EXISTS_IN_OTHER:
            data["field"], data["value"] = "", ""
        elif op in (ops.HAS_TAG, ops.HAS_NO_TAG):
            data["field"] = ""
        elif op in (ops.IS_EMPTY, ops.IS_SET):
            data["value"] = ""
        return data


class ActionForm(_RulePartForm):
    class Meta:
        model = Action
        fields = ["kind", "field", "value"]

    def clean(self) -> dict[str, Any]:
        """Action.clean() (through the model validation) says what is wrong."""
        data = super().clean()
        if data.get("kind") in (Action.Kind.ADD_TAG, Action.Kind.REMOVE_TAG):
            data["field"] = ""
        return data
