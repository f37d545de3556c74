"""What a marketing-ops person reads: the apps' names instead of "A" and
"B", rules as IF/THEN, a driftsync-branded staff site with connections
first, a login without sign-up, and only the buttons that can work."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from connections.models import Action, Condition, Connection, FieldMapping, Rule, SyncRun
from connectors.base import Field, FieldType

pytestmark = pytest.mark.django_db

DRIFT_FIELDS = [
    Field("email", "Email", FieldType.EMAIL),
    Field("lead_stage", "Lead Stage", FieldType.TEXT),
]
HUBSPOT_FIELDS = [
    Field("email", "Email", FieldType.EMAIL),
    Field("jobtitle", "Job Title", FieldType.TEXT),
    Field("lifecyclestage", "Lifecycle Stage", FieldType.TEXT),
]


@pytest.fixture
def conn(make_account, make_connection) -> Connection:
    drift = make_account("drift", fields=DRIFT_FIELDS, label="Acme org")
    hubspot = make_account("hubspot", fields=HUBSPOT_FIELDS, label="Acme portal")
    return make_connection(drift, hubspot, name="Leads")


def change_url(obj: Any) -> str:
    return reverse(f"admin:connections_{obj._meta.model_name}_change", args=[obj.pk])


# ------------------------------------------------------------ the apps' names


def test_a_connection_names_its_sides_by_their_apps(conn, make_account, make_connection):
    assert conn.side_name("a") == "Drift"
    assert conn.arrow("a_to_b") == "Drift → HubSpot"
    assert conn.arrow("b_to_a") == "HubSpot → Drift"
    assert conn.arrow("two_way") == "Drift ↔ HubSpot"
    # two accounts of the same app: their labels tell them apart
    same = make_connection(
        make_account("hubspot", label="EU"), make_account("hubspot", label="US"), name="EU/US"
    )
    assert same.arrow("a_to_b") == "HubSpot (EU) → HubSpot (US)"


def test_the_connection_page_speaks_in_app_names_and_field_labels(admin_client, conn):
    FieldMapping.objects.create(connection=conn, field_a="lead_stage", field_b="jobtitle")
    page = admin_client.get(change_url(conn)).content.decode()
    assert ">Drift</h2>" in page  # the sides' sections, by app
    assert ">HubSpot</h2>" in page
    assert "Side A" not in page
    assert "Lead Stage ↔ Job Title" in page  # the mapping row's caption
    assert "lead_stage ↔ jobtitle" not in page
    assert ">Drift → HubSpot</option>" in page  # direction choices
    assert ">HubSpot wins</option>" in page  # conflict policy
    assert "Settings a" not in page
    assert 'name="settings_a"' not in page


def test_a_run_says_full_read_not_a_bare_checkmark(admin_client, conn):
    run = SyncRun.objects.create(connection=conn, full=False)
    page = admin_client.get(change_url(run)).content.decode()
    assert "Full read" in page
    assert "No: only the changes" in page
    listing = admin_client.get(reverse("admin:connections_syncrun_changelist")).content.decode()
    assert "By full read" in listing


# ------------------------------------------------------------------- rules


def rule_data(rule: Rule) -> dict[str, str]:
    return {
        "name": "",
        "direction": rule.direction,
        "position": "0",
        "enabled": "on",
        "conditions-TOTAL_FORMS": "0",
        "conditions-INITIAL_FORMS": "0",
        "actions-TOTAL_FORMS": "0",
        "actions-INITIAL_FORMS": "0",
    }


def test_a_rule_reads_as_if_then_in_app_names_and_returns_to_its_connection(admin_client, conn):
    rule = Rule.objects.create(connection=conn, direction="a_to_b")
    Condition.objects.create(rule=rule, operator="eq", field="lead_stage", value="MQL")
    Action.objects.create(rule=rule, kind="set_field", field="lifecyclestage", value="lead")
    assert str(rule) == "Drift → HubSpot rule #1"

    page = admin_client.get(change_url(rule)).content.decode()
    assert (
        "IF a Drift contact: Lead Stage equals “MQL” THEN sync it to HubSpot"
        " and set Lifecycle Stage to “lead”"
    ) in page
    assert "IF (conditions, all must hold)" in page
    assert "THEN (actions" in page

    response = admin_client.post(change_url(rule), rule_data(rule) | {"_save": "Save"})
    assert response.status_code == 302
    assert response.url == change_url(conn)
    # "Save and continue editing" stays on the rule
    response = admin_client.post(change_url(rule), rule_data(rule) | {"_continue": "1"})
    assert response.url == change_url(rule)


# -------------------------------------------------------------- the staff site


def test_the_staff_site_is_driftsync_with_connections_first(admin_client, conn):
    page = admin_client.get(reverse("admin:index"))
    html = page.content.decode()
    assert page.context["site_header"] == "driftsync"
    assert page.context["site_url"] is None
    assert "View site" not in html
    assert "Connections and their health" in html
    table = html.index('id="connections-health"')
    assert html.index("Leads", table) < html.index("app-auth")
    assert "Drift ↔ HubSpot" in html
    app_labels = [app["app_label"] for app in page.context["app_list"]]
    assert app_labels[0] == "connections"
    assert page.context["app_list"][0]["models"][0]["object_name"] == "Connection"


def test_plumbing_is_for_superusers_only(admin_client, django_user_model):
    superuser_labels = {a["app_label"] for a in admin_client.get("/admin/").context["app_list"]}
    assert {"django_q", "sites", "socialaccount"} <= superuser_labels

    staff = django_user_model.objects.create_user("ops", password="ops-password-1", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    client = Client()
    client.force_login(staff)
    labels = {a["app_label"] for a in client.get("/admin/").context["app_list"]}
    assert "connections" in labels
    assert not labels & {"django_q", "sites", "socialaccount", "account"}
    assert client.get("/admin/django_q/").status_code == 404


def test_the_admin_login_has_no_sign_up():
    client = Client()
    response = client.get("/admin/", follow=True)
    html = response.content.decode()
    assert 'id="login-form"' in html
    assert "driftsync" in html
    assert "sign up" not in html.lower()
    assert "signup" not in html.lower()


def test_connect_buttons_only_for_apps_with_an_oauth_client(admin_client, settings):
    settings.SOCIALACCOUNT_PROVIDERS = {
        **settings.SOCIALACCOUNT_PROVIDERS,
        "google": {
            **settings.SOCIALACCOUNT_PROVIDERS["google"],
            "APP": {"client_id": "g-id", "secret": "s"},
        },
        "hubspot": {
            **settings.SOCIALACCOUNT_PROVIDERS["hubspot"],
            "APP": {"client_id": "", "secret": ""},
        },
    }
    page = admin_client.get(reverse("admin:connections_account_changelist")).content.decode()
    assert "Connect with Google Contacts" in page
    assert "Connect with HubSpot" not in page
