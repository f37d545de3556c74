"""The engine's lean INSERT / UPDATE (``connections.engine.bulk``) writes
exactly the rows Django's ``bulk_create`` and ``save`` write, column by
column, as the database stores them (run on PostgreSQL too: integration)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from connections.engine import bulk
from connections.models import ContactLink, LinkStatus, SyncEvent, SyncRun

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

NOW = dt.datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=dt.UTC)
PARIS = dt.timezone(dt.timedelta(hours=1))


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> dt.datetime:
    """One ``now`` for both paths (bulk_create stamps each row as it goes)."""
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    return NOW


def link_values(i: int) -> dict[str, Any]:
    """Bindings as a run leaves them: every kind of value each column takes."""
    synced = dt.datetime(2025, 12, 31, 23, 59, 59, 5, tzinfo=PARIS) + dt.timedelta(minutes=i)
    values: dict[str, Any] = {
        "id_a": f"people/c{i}",
        "id_b": None if i % 3 == 0 else f"{i:032x}",
        "email": f"Person.{i}@example.com" if i % 2 else "",
        "base_a": {
            "given_name": f"Zoë {i}",
            "family_name": 'O\'Brien "the" 🙂',
            "phone": None,
            "tags": ["b", "a"],
            "nested": {"n": 1.5, "t": True, "empty": [], "big": 2**40},
        },
        "base_b": {} if i % 2 else {"FNAME": "\\back\\slash", "__unsubscribed__": True},
        "version_a": "etag-" + "x" * (i % 5),
        "version_b": "",
        "rule_tags": {"3": ["VIP"]} if i % 4 == 0 else {},
        "status": [LinkStatus.IN_SYNC, LinkStatus.FAILING, LinkStatus.DUPLICATE][i % 3],
        "status_reason": "Google refused it: 400\nline two" if i % 3 == 1 else "",
        "failure_count": i % 3,
        "retry_after": synced + dt.timedelta(minutes=2) if i % 3 == 1 else None,
        "unsubscribed_on": "b" if i % 5 == 0 else "",
        "trash_pending": "a" if i % 7 == 0 else "",
        "trash_reason": "held: mass deletion" if i % 7 == 0 else "",
        "trash_attempts": i % 2,
        "trash_retry_after": None,
        "trash_confirmed": i % 6 == 0,
        "first_synced_at": synced if i % 2 else None,
        "last_synced_at": synced,
    }
    return values


def stored(model: type, where: str, param: int) -> list[tuple[Any, ...]]:
    """The rows as the database hands them back (no ORM conversion), without
    the pk and the column that tells the two copies apart."""
    meta = model._meta
    columns = [f.column for f in meta.concrete_fields if f is not meta.pk and f.column != where]
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(meta.db_table)} "
            f"WHERE {quote(where)} = %s ORDER BY {quote(meta.pk.column)}",
            [param],
        )
        return [tuple(row) for row in cursor.fetchall()]


def test_links_are_inserted_as_bulk_create_inserts_them(make_connection, frozen):
    by_orm, by_bulk = make_connection(), make_connection()
    orm = [ContactLink(connection=by_orm, **link_values(i)) for i in range(30)]
    fast = [ContactLink(connection=by_bulk, **link_values(i)) for i in range(30)]
    with transaction.atomic():
        ContactLink.objects.bulk_create(orm)
    with transaction.atomic():
        bulk.insert(fast)

    assert stored(ContactLink, "connection_id", by_bulk.pk) == stored(
        ContactLink, "connection_id", by_orm.pk
    )
    assert len(stored(ContactLink, "connection_id", by_bulk.pk)) == 30
    # the objects are saved ones now, each with its own row's pk and stamps
    for link in fast:
        assert link.pk is not None
        assert not link._state.adding
        assert link._state.db == "default"
        row = ContactLink.objects.get(pk=link.pk)
        assert (row.id_a, row.created_at, row.updated_at) == (link.id_a, frozen, frozen)
        assert row.base_a == link.base_a
        assert row.status == link.status
    assert [x.created_at for x in fast] == [x.created_at for x in orm]


def test_events_are_inserted_as_bulk_create_inserts_them(make_connection, frozen):
    conn = make_connection()
    links = [ContactLink(connection=conn, id_a=f"c{i}") for i in range(3)]
    ContactLink.objects.bulk_create(links)
    runs = [SyncRun.objects.create(connection=conn) for _ in range(2)]

    def events(run: SyncRun, new_link: ContactLink) -> list[SyncEvent]:
        made = []
        for i in range(12):
            link = [None, links[i % 3], new_link, links[(i + 1) % 3]][i % 4]
            made.append(
                SyncEvent(
                    run=run,
                    link=link,
                    email=f"p{i}@example.com",
                    side="ab"[i % 2],
                    action=SyncEvent.Action.UPDATED if i % 2 else "created",
                    reason="new in Google" if i % 4 else "",
                    changes=[{"field": "given_name", "old": None, "new": f"Zoë {i}"}]
                    if i % 2
                    else [],
                    created_at=NOW - dt.timedelta(seconds=i),
                )
            )
        return made

    # a binding saved after its events were built: they take its pk, as with bulk_create
    new_orm, new_fast = ContactLink(connection=conn), ContactLink(connection=conn)
    orm, fast = events(runs[0], new_orm), events(runs[1], new_fast)
    new_orm.save()
    new_fast.save()
    SyncEvent.objects.bulk_create(orm)
    bulk.insert(fast)

    def comparable(run: SyncRun) -> list[tuple[Any, ...]]:
        # the new bindings differ by pk: compare where each points
        new = {new_orm.pk: "new", new_fast.pk: "new"}
        return [(new.get(row[0], row[0]), *row[1:]) for row in stored(SyncEvent, "run_id", run.pk)]

    assert comparable(runs[1]) == comparable(runs[0])
    assert len(comparable(runs[1])) == 12
    assert all(e.pk is not None and not e._state.adding for e in fast)
    assert {e.link_id for e in fast if e.link is not None} == {
        *(x.pk for x in links),
        new_fast.pk,
    }


def test_an_unsaved_related_object_is_refused_as_bulk_create_refuses_it(make_connection):
    conn = make_connection()
    run = SyncRun.objects.create(connection=conn)
    unsaved = ContactLink(connection=conn)
    with pytest.raises(ValueError, match="unsaved related object 'link'"):
        SyncEvent.objects.bulk_create([SyncEvent(run=run, link=unsaved, action="created")])
    with pytest.raises(ValueError, match="unsaved related object 'link'"):
        bulk.insert([SyncEvent(run=run, link=unsaved, action="created")])
    assert not SyncEvent.objects.exists()


def test_a_row_the_database_refuses_inserts_nothing_of_its_page(make_connection):
    """record.save_rows then retries each binding alone: only that one fails."""
    conn = make_connection()
    ContactLink.objects.create(connection=conn, id_a="taken")
    page = [ContactLink(connection=conn, id_a=f"c{i}") for i in range(5)]
    page.append(ContactLink(connection=conn, id_a="taken"))
    with pytest.raises(IntegrityError), transaction.atomic():
        bulk.insert(page)
    assert ContactLink.objects.filter(connection=conn).count() == 1


def test_an_update_writes_what_save_writes(make_connection, frozen):
    by_orm, by_bulk = make_connection(), make_connection()
    orm = [ContactLink.objects.create(connection=by_orm, id_a=f"c{i}") for i in range(10)]
    fast = [ContactLink.objects.create(connection=by_bulk, id_a=f"c{i}") for i in range(10)]
    # created_at (auto_now_add) named too: an UPDATE keeps it, updated_at takes now
    names = [n for n in link_values(0) if n != "id_a"] + ["updated_at", "created_at"]
    for i, (a, b) in enumerate(zip(orm, fast, strict=True)):
        for link in (a, b):
            for name, value in link_values(i).items():
                setattr(link, name, value)
            link.created_at = NOW - dt.timedelta(days=30)
    created = {link.pk: link.created_at for link in fast}
    for link in orm:
        link.save(update_fields=names)
    bulk.update(fast, names)
    assert {link.pk: link.created_at for link in fast} == created

    assert stored(ContactLink, "connection_id", by_bulk.pk) == stored(
        ContactLink, "connection_id", by_orm.pk
    )
    assert all(link.updated_at == frozen for link in fast)


def test_a_page_of_more_rows_than_one_statement_takes(make_connection, monkeypatch):
    """Split across statements, each object still gets its own row's pk."""
    monkeypatch.setattr(bulk, "ROWS", 7)
    conn = make_connection()
    links = [ContactLink(connection=conn, id_a=f"c{i}", email=f"p{i}@x.com") for i in range(30)]
    bulk.insert(links)
    stored_ = dict(ContactLink.objects.filter(connection=conn).values_list("pk", "id_a"))
    assert {link.pk: link.id_a for link in links} == stored_
    assert len(stored_) == 30


def attributes(obj: Any) -> dict[str, Any]:
    """Every column's value on the object and the related objects it caches."""
    meta = type(obj)._meta
    values = {f.attname: getattr(obj, f.attname) for f in meta.concrete_fields}
    relations = [f for f in meta.concrete_fields if f.is_relation]
    cached = {f.name: f.get_cached_value(obj) for f in relations if f.is_cached(obj)}
    return {**values, "cached": cached, "adding": obj._state.adding, "db": obj._state.db}


def test_the_factory_makes_what_the_model_makes(make_connection, frozen):
    conn = make_connection()
    run = SyncRun.objects.create(connection=conn)
    saved = ContactLink.objects.create(connection=conn, id_a="c1")
    unsaved = ContactLink(connection=conn)
    links, events = bulk.Factory(ContactLink), bulk.Factory(SyncEvent)

    assert attributes(links(connection=conn)) == attributes(ContactLink(connection=conn))
    values = link_values(3)
    assert attributes(links(connection=conn, **values)) == attributes(
        ContactLink(connection=conn, **values)
    )
    for link in (saved, unsaved, None):
        kwargs = {"run": run, "link": link, "email": "p@x.com", "side": "a", "action": "created"}
        made, expected = events(**kwargs), SyncEvent(**kwargs)
        # a default that is a callable is called for each object (created_at: now)
        assert made.created_at is not None
        made.created_at = expected.created_at
        assert attributes(made) == attributes(expected)
    assert events(run_id=run.pk).run_id == run.pk
    with pytest.raises(KeyError):
        events(nonsense=1)


def test_recording_stores_bindings_and_events_through_the_fast_path(make_connection, frozen):
    """The recorder's own calls (``Events.new`` + ``save_events``, ``LiveWriter.save_links``)."""
    from connections.engine.record import Events, save_events
    from connections.engine.writer import LiveWriter

    conn = make_connection()
    run = SyncRun.objects.create(connection=conn)
    created = [ContactLink(connection=conn, **link_values(i)) for i in range(4)]
    # events built before their bindings were saved (as for a new contact)
    events = Events(run)
    made = [events.new(x, "a", "created", "new\x00 in Google", email=" P@X.com ") for x in created]
    LiveWriter().save_links(created, [])
    save_events(made)
    assert ContactLink.objects.filter(connection=conn).count() == 4
    stored_events = list(SyncEvent.objects.filter(run=run).order_by("pk"))
    assert [e.link_id for e in stored_events] == [link.pk for link in created]
    assert {(e.email, e.reason) for e in stored_events} == {("p@x.com", "new in Google")}
