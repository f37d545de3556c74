"""The retries at the end of a big run: the links the run already handled
are left out however many they are (an initial sync of 100,000 contacts
handles as many), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from connections.engine.context import Context
from connections.engine.read import Reader
from connections.models import ContactLink, LinkStatus
from connectors.base import Contact


class Asked:
    """The apps, as far as the retries ask them: contacts by id."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    def get_contacts(self, ids):
        self.asked.append(list(ids))
        return {i: Contact(id=i, email=f"{i}@example.com") for i in ids}


@pytest.mark.integration
def test_a_failing_contact_is_retried_after_a_run_that_handled_70000(make_connection):
    conn = make_connection()
    done = ContactLink.objects.create(connection=conn, id_a="a-1", status=LinkStatus.FAILING)
    due = ContactLink.objects.create(connection=conn, id_a="a-2", status=LinkStatus.FAILING)
    apps = {"a": Asked(), "b": Asked()}
    reader = Reader(conn, apps, Context([], []), full=False, fresh_full=False)  # type: ignore[arg-type]
    processed = set(range(done.pk + 100_000, done.pk + 170_000)) | {done.pk}
    batches = list(reader.retries(processed))
    assert [[c.id for c in batch.contacts] for batch in batches] == [["a-2"]]
    assert apps["a"].asked == [["a-2"]]
    assert due.pk not in processed
