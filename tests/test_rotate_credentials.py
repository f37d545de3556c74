import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from connections.fields import _fernet
from connections.models import Account


@pytest.mark.django_db
def test_rotating_the_key_re_encrypts_every_credential(settings, capsys):
    old = settings.CREDENTIALS_KEYS[0]
    account = Account.objects.create(connector="hubspot", label="x")
    account.credentials = {"api_key": "pat-secret-123456"}
    account.save()
    new = Fernet.generate_key().decode()
    settings.CREDENTIALS_KEYS = [new, old]
    _fernet.cache_clear()
    call_command("rotate_credentials")
    assert "1 account" in capsys.readouterr().out
    settings.CREDENTIALS_KEYS = [new]  # the old key is gone now
    _fernet.cache_clear()
    account.refresh_from_db()
    assert account.credentials["api_key"] == "pat-secret-123456"
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM connections_account WHERE id = %s", [account.pk])
        raw = cursor.fetchone()[0]
    assert "pat-secret" not in raw
    _fernet.cache_clear()
