from __future__ import annotations

from pathlib import Path

import pytest
from django.db import IntegrityError, connection, transaction

from connections.models import Account, ContactLink, FieldMapping

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "pat-na1-0123456789abcdef-PLAINTEXT-TOKEN"


def test_a_field_is_mapped_at_most_once_per_side(make_connection):
    conn = make_connection()
    FieldMapping.objects.create(connection=conn, field_a="email", field_b="email")
    with pytest.raises(IntegrityError), transaction.atomic():
        FieldMapping.objects.create(connection=conn, field_a="email", field_b="phone")
    with pytest.raises(IntegrityError), transaction.atomic():
        FieldMapping.objects.create(connection=conn, field_a="phone", field_b="email")


def test_link_ids_are_unique_per_connection_and_side(make_connection):
    conn, other = make_connection(), make_connection()
    ContactLink.objects.create(connection=conn, id_a="1", id_b="x")
    ContactLink.objects.create(connection=other, id_a="1", id_b="x")  # another connection
    ContactLink.objects.create(connection=conn, id_a=None, id_b=None)
    ContactLink.objects.create(connection=conn, id_a=None, id_b=None)  # nulls never clash
    with pytest.raises(IntegrityError), transaction.atomic():
        ContactLink.objects.create(connection=conn, id_a="1", id_b="y")
    with pytest.raises(IntegrityError), transaction.atomic():
        ContactLink.objects.create(connection=conn, id_a="2", id_b="x")


def test_the_interval_is_at_least_one_minute(make_connection):
    conn = make_connection()
    with pytest.raises(IntegrityError), transaction.atomic():
        type(conn).objects.filter(pk=conn.pk).update(interval_minutes=0)


def test_an_app_account_is_set_up_once(make_account):
    make_account("hubspot", remote_id="123")
    make_account("hubspot", remote_id="123", base_url="http://127.0.0.1:9/hubspot")
    make_account("hubspot", remote_id="")
    make_account("hubspot", remote_id="")  # not checked yet: no remote id to clash
    with pytest.raises(IntegrityError), transaction.atomic():
        make_account("hubspot", remote_id="123")


def test_credentials_are_ciphertext_in_the_database(make_account, settings):
    account = make_account(token=SECRET)
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM connections_account WHERE id = %s", [account.pk])
        (raw,) = cursor.fetchone()
    assert raw.startswith("gAAAA")
    assert SECRET not in raw
    assert Account.objects.get(pk=account.pk).get_credentials().api_key == SECRET
    assert SECRET not in str(account)
    assert SECRET not in repr(account.get_credentials())
    assert account.credential_hint() == "…OKEN"


def test_the_database_file_never_holds_the_plaintext_token(make_account, settings, tmp_path):
    make_account(token=SECRET)
    db_file = connection.settings_dict["NAME"]
    if not isinstance(db_file, str) or db_file.startswith(("file:", ":memory:")):
        # the test database lives in memory: write it out to inspect its bytes
        target = tmp_path / "copy.sqlite3"
        with connection.cursor() as cursor:
            cursor.execute("VACUUM INTO %s", [str(target)])
        db_file = str(target)
    data = Path(db_file).read_bytes()
    assert SECRET.encode() not in data
