from __future__ import annotations

import pytest
from allauth.socialaccount.models import SocialApp
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from connections.models import (
    Account,
    Action,
    Condition,
    Connection,
    ContactLink,
    FieldMapping,
    Rule,
    SyncEvent,
    SyncRun,
    WebhookEvent,
)
from connectors.base import Field, FieldType

pytestmark = pytest.mark.django_db

SECRET = "pat-na1-SECRET-abcdef0123456789-TOKEN"

FIELDS_A = [
    Field("email", "Email", FieldType.EMAIL),
    Field("name", "Name", FieldType.TEXT),
    Field("score", "Score", FieldType.NUMBER),
    Field("born", "Born", FieldType.DATE),
    Field("stage_small", "Stage", FieldType.CHOICE, choices=("lead",)),
    Field("flag", "Flag", FieldType.BOOLEAN),
    Field("created", "Created", FieldType.DATETIME, read_only=True),
]
FIELDS_B = [
    Field("email", "Email", FieldType.EMAIL),
    Field("note", "Note", FieldType.TEXT),
    Field("count", "Count", FieldType.NUMBER),
    Field("seen", "Seen", FieldType.DATETIME),
    Field("stage", "Stage", FieldType.CHOICE, choices=("lead", "customer")),
    Field("updated", "Updated", FieldType.DATETIME, read_only=True),
]


@pytest.fixture
def conn(make_account, make_connection) -> Connection:
    a = make_account("hubspot", fields=FIELDS_A, token=SECRET)
    b = make_account("google", fields=FIELDS_B)
    return make_connection(a, b, name="HubSpot ↔ Google")


@pytest.fixture
def every_object(conn, admin_user) -> None:
    rule = Rule.objects.create(connection=conn, direction="a_to_b")
    Condition.objects.create(rule=rule, operator="has_tag", value="vip")
    Action.objects.create(rule=rule, kind="add_tag", value="from hubspot")
    FieldMapping.objects.create(connection=conn, field_a="email", field_b="email")
    link = ContactLink.objects.create(connection=conn, id_a="1", id_b="people/c1", email="a@x.io")
    run = SyncRun.objects.create(connection=conn, counters={"a": {"created": 1}})
    SyncEvent.objects.create(
        run=run,
        link=link,
        email="a@x.io",
        side="b",
        action="updated",
        changes=[{"field": "note", "old": "x", "new": "y"}],
    )
    WebhookEvent.objects.create(source="drift", body='{"type": "contact_identified"}')
    Group.objects.create(name="auditors")
    SocialApp.objects.create(provider="google", name="g", client_id="id", secret="s")


def post_data_for(conn: Connection, mappings: list[tuple[str, str, str]]) -> dict[str, str]:
    data = {
        "name": conn.name,
        "account_a": str(conn.account_a_id),
        "account_b": str(conn.account_b_id),
        "direction": conn.direction,
        "conflict_policy": conn.conflict_policy,
        "avoid_duplicates": "on",
        "trash_tag": conn.trash_tag,
        "unsubscribe_tag": conn.unsubscribe_tag,
        "interval_minutes": "15",
        "rules-TOTAL_FORMS": "0",
        "rules-INITIAL_FORMS": "0",
        "mappings-TOTAL_FORMS": str(len(mappings)),
        "mappings-INITIAL_FORMS": "0",
    }
    for i, (a, b, direction) in enumerate(mappings):
        data |= {
            f"mappings-{i}-field_a": a,
            f"mappings-{i}-field_b": b,
            f"mappings-{i}-direction": direction,
            f"mappings-{i}-enabled": "on",
        }
    return data


def change_url(obj) -> str:
    meta = obj._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])


# -------------------------------------------------------------------- smoke


def test_every_admin_page_loads_for_a_superuser(admin_client, every_object):
    request = type("R", (), {"user": User.objects.get(username="admin")})()
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        base = f"admin:{meta.app_label}_{meta.model_name}"
        response = admin_client.get(reverse(f"{base}_changelist"))
        assert response.status_code == 200, model
        add = admin_client.get(reverse(f"{base}_add"))
        expected = 200 if model_admin.has_add_permission(request) else 403
        assert add.status_code == expected, model
        obj = model_admin.get_queryset(request).first()
        if obj is not None:
            response = admin_client.get(change_url(obj))
            assert response.status_code == 200, model
    for model in (Connection, Rule, SyncRun, SyncEvent, ContactLink, WebhookEvent):
        obj = model.objects.first()
        assert admin_client.get(change_url(obj)).status_code == 200


# ------------------------------------------------------------ mappings (§3)


@pytest.mark.parametrize(
    ("field_a", "field_b", "direction", "shown"),
    [
        ("name", "note", "two_way", "A ↔ B"),  # same type: two-way
        ("score", "note", "two_way", "A → B"),  # number → text: one-way
        ("born", "seen", "two_way", "A ↔ B"),  # date ↔ datetime
        ("stage_small", "stage", "two_way", "A → B"),  # every option of A exists in B
        ("name", "updated", "two_way", "B → A"),  # never into read-only; datetime → text
        ("created", "seen", "two_way", "A → B"),  # read-only source, writable target
        ("score", "count", "b_to_a", "B → A"),
    ],
)
def test_compatible_mappings_are_accepted_with_their_effective_direction(
    admin_client, conn, field_a, field_b, direction, shown
):
    response = admin_client.post(
        change_url(conn), post_data_for(conn, [(field_a, field_b, direction)]), follow=True
    )
    assert response.status_code == 200
    mapping = FieldMapping.objects.get(connection=conn)
    assert (mapping.field_a, mapping.field_b) == (field_a, field_b)
    page = admin_client.get(change_url(conn)).content.decode()
    # in the apps' names: "HubSpot → Google Contacts", not "A → B"
    assert conn.named(shown) != shown
    assert conn.named(shown) in page


@pytest.mark.parametrize(
    ("field_a", "field_b", "direction", "reason"),
    [
        ("flag", "count", "two_way", "a boolean field cannot be written into a number field"),
        ("created", "updated", "two_way", "“Updated” is read-only"),
        (
            "score",
            "note",
            "b_to_a",
            "Google Contacts → HubSpot cannot work: a text field cannot",
        ),
        ("email", "stage", "two_way", "cannot be mapped"),
        ("stage_small", "stage", "b_to_a", "options of “Stage” missing in “Stage”: customer"),
    ],
)
def test_incompatible_mappings_are_form_errors_that_say_why(
    admin_client, conn, field_a, field_b, direction, reason
):
    response = admin_client.post(
        change_url(conn), post_data_for(conn, [(field_a, field_b, direction)])
    )
    assert response.status_code == 200  # the form again, with errors
    assert reason in response.content.decode()
    assert not FieldMapping.objects.exists()


def test_a_field_mapped_twice_is_a_form_error(admin_client, conn):
    data = post_data_for(conn, [("name", "note", "two_way"), ("name", "email", "two_way")])
    response = admin_client.post(change_url(conn), data)
    assert "is already mapped" in response.content.decode()
    assert not FieldMapping.objects.exists()


# ----------------------------------------------------------------- options


def test_sync_unsubscribes_is_refused_with_its_reason(admin_client, conn):
    data = post_data_for(conn, []) | {"sync_unsubscribes": "on"}
    response = admin_client.post(change_url(conn), data)
    page = response.content.decode()
    assert "cannot work for this connection" in page
    assert "HubSpot cannot detect unsubscribes" in page
    conn.refresh_from_db()
    assert not conn.sync_unsubscribes


def test_sync_deletions_is_accepted_where_it_works_and_the_page_says_which_way(admin_client, conn):
    data = post_data_for(conn, []) | {"sync_deletions": "on"}
    admin_client.post(change_url(conn), data)
    conn.refresh_from_db()
    assert conn.sync_deletions
    page = admin_client.get(change_url(conn)).content.decode()
    assert (
        "HubSpot → Google Contacts (deletions in HubSpot tag the contact in Google Contacts)"
        in page
    )


def test_a_drift_connection_says_what_drift_cannot_do(admin_client, make_account, make_connection):
    connection = make_connection(make_account("drift"), make_account("google"))
    page = admin_client.get(change_url(connection)).content.decode()
    assert "Drift → other syncs only newly identified contacts (webhook)" in page


def test_adding_a_connection_applies_the_defaults_and_makes_a_draft(admin_client, make_account):
    a, b = make_account("hubspot"), make_account("google")
    # the first step asks for the two apps only; a state sent anyway is ignored
    data = {
        "name": "new",
        "account_a": a.pk,
        "account_b": b.pk,
        "direction": "two_way",
        "state": "active",
    }
    response = admin_client.post(reverse("admin:connections_connection_add"), data)
    assert response.status_code == 302
    connection = Connection.objects.get(name="new")
    assert response.url == reverse("admin:connections_connection_change", args=[connection.pk])
    assert connection.state == Connection.State.DRAFT
    assert connection.rules.count() == 2
    assert connection.mappings.filter(is_default=True).count() == 5


def test_the_first_step_speaks_of_the_first_and_second_app_never_of_a_and_b(
    admin_client, make_account
):
    make_account("drift")
    page = admin_client.get(reverse("admin:connections_connection_add")).content.decode()
    assert "First app" in page
    assert "Second app" in page
    assert "One-way: first app → second app" in page
    for letters in ("Side A", "Side B", "A → B", "B → A"):
        assert letters not in page
    same = make_account("hubspot")
    data = {"name": "x", "account_a": same.pk, "account_b": same.pk, "direction": "two_way"}
    page = admin_client.post(reverse("admin:connections_connection_add"), data).content.decode()
    assert "Choose another account than the first app&#x27;s." in page


# ------------------------------------------------------------------- rules


def rule_post(rule: Rule, conditions=(), actions=()) -> dict[str, str]:
    data = {
        "name": "",
        "direction": rule.direction,
        "position": "0",
        "enabled": "on",
        "conditions-TOTAL_FORMS": str(len(conditions)),
        "conditions-INITIAL_FORMS": "0",
        "actions-TOTAL_FORMS": str(len(actions)),
        "actions-INITIAL_FORMS": "0",
    }
    for i, (op, field, value) in enumerate(conditions):
        data |= {f"conditions-{i}-operator": op, f"conditions-{i}-field": field}
        data[f"conditions-{i}-value"] = value
    for i, (kind, field, value) in enumerate(actions):
        data |= {f"actions-{i}-kind": kind, f"actions-{i}-field": field}
        data[f"actions-{i}-value"] = value
    return data


@pytest.mark.parametrize(
    ("conditions", "actions", "error"),
    [
        ([("has_tag", "", "")], [], "A tag condition needs the tag"),
        ([("gt", "score", "many")], [], "Not a valid value for “Score”"),
        ([("gt", "name", "x")], [], "need a number or a date"),
        ([("eq", "", "x")], [], "Pick the field"),
        ([], [("set_field", "updated", "2024-01-01")], "is read-only in the target app"),
        ([], [("set_field", "count", "lots")], "Not a valid value for “Count”"),
        ([], [("add_tag", "", "")], "Which tag?"),
    ],
)
def test_rule_conditions_and_actions_are_validated(admin_client, conn, conditions, actions, error):
    rule = Rule.objects.create(connection=conn, direction="a_to_b")
    response = admin_client.post(change_url(rule), rule_post(rule, conditions, actions))
    assert error in response.content.decode()
    assert not Condition.objects.exists()
    assert not Action.objects.exists()


def test_valid_conditions_and_actions_are_saved(admin_client, conn):
    rule = Rule.objects.create(connection=conn, direction="a_to_b")
    data = rule_post(
        rule,
        [("exists_in_other", "", ""), ("gte", "score", "2"), ("has_tag", "", "vip")],
        [("set_field", "stage", "customer"), ("add_tag", "", "synced")],
    )
    response = admin_client.post(change_url(rule), data)
    assert response.status_code == 302
    assert rule.conditions.count() == 3
    assert rule.actions.count() == 2


# ------------------------------------------------------------- credentials


def test_the_credential_never_appears_in_admin_pages(admin_client, conn):
    account = conn.account_a
    pages = [
        change_url(account),
        reverse("admin:connections_account_changelist"),
        reverse("admin:connections_account_history", args=[account.pk]),
        change_url(conn),
    ]
    for url in pages:
        page = admin_client.get(url).content.decode()
        assert SECRET not in page, url
    assert "…OKEN" in admin_client.get(change_url(account)).content.decode()


def test_a_pasted_token_is_write_only_and_blank_keeps_it(admin_client, conn):
    account = conn.account_a
    data = {"label": "renamed", "base_url": ""}
    assert admin_client.post(change_url(account), data).status_code == 302
    account.refresh_from_db()
    assert account.label == "renamed"
    assert account.get_credentials().api_key == SECRET
    Account.objects.filter(pk=account.pk).update(status=Account.Status.OK)
    admin_client.post(change_url(account), data | {"secret": "new-secret-value-0001"})
    account.refresh_from_db()
    assert account.get_credentials().api_key == "new-secret-value-0001"
    assert account.status == Account.Status.UNCHECKED  # until it is tested
    history = admin_client.get(reverse("admin:connections_account_history", args=[account.pk]))
    assert "new-secret-value-0001" not in history.content.decode()


# ------------------------------------------------------------- permissions


def test_a_view_only_user_audits_but_changes_nothing(view_only_user, every_object, conn):
    client = Client()
    client.force_login(view_only_user)
    for model in (SyncRun, SyncEvent, ContactLink, WebhookEvent, Connection):
        meta = model._meta
        changelist = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        assert client.get(changelist).status_code == 200
        assert client.get(change_url(model.objects.first())).status_code == 200
    assert client.post(change_url(conn), post_data_for(conn, [])).status_code == 403
    account = conn.account_a
    page = client.get(change_url(account)).content.decode()
    assert SECRET not in page
    assert 'name="secret"' not in page
    assert "Test connection" not in page
    test_url = reverse("admin:connections_account_test", args=[account.pk])
    assert client.post(test_url).status_code == 403
    assert client.post(change_url(account), {"label": "x"}).status_code == 403


# ------------------------------------------------------------------- login


def test_admin_login_goes_through_allauth_and_a_password_works(admin_user):
    client = Client()
    response = client.get(reverse("admin:login"))
    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")
    response = client.post(
        "/accounts/login/", {"login": "admin", "password": "password", "next": "/admin/"}
    )
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_a_view_only_user_reads_the_connection_in_the_apps_names(view_only_user, conn):
    conn.settings_b = {"contact_group": "contactGroups/friends"}
    conn.save()
    client = Client()
    client.force_login(view_only_user)
    page = client.get(change_url(conn)).content.decode()
    a, b = conn.side_name("a"), conn.side_name("b")
    assert f"{a} ↔ {b}" in page  # the direction
    assert f"{a} wins" in page or f"{b} wins" in page or "Most recent change wins" in page
    for engineer_words in ("Side A", "Side B", "Settings a", "Settings b", "A → B", "A ↔ B"):
        assert engineer_words not in page, engineer_words
