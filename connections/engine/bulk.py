"""Many rows of one model in few statements, without the ORM's per-value work.

A run records one binding and about two events per contact. Django's
``bulk_create`` prepares every value of every row through its field (a
``pre_save``, a ``get_db_prep_save`` and a placeholder each) and, on SQLite,
sends at most 999 parameters per INSERT (43 bindings a statement): recording
was half the engine's time at latency 0 (docs/benchmark.md). Here each column
gets one converter, chosen once per field type (the field's own method for
anything unusual), and rows go in INSERT statements of up to ``ROWS`` rows.

The rows are the ones ``bulk_create`` writes: the same columns and values
(JSON and datetimes through the backend's own adapters), ``auto_now`` /
``auto_now_add`` fields set on the objects, a related object saved after it
was assigned taken by its pk (an unsaved one refused, as Django refuses it),
and the new pks set on the objects (``INSERT … RETURNING``, in row order, as
``bulk_create`` takes them). ``tests/engine/test_bulk.py`` compares the two
column by column, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import operator
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models, router
from django.db.models.fields import NOT_PROVIDED
from django.utils import timezone

#: rows per INSERT statement (fewer where the database's parameter limit says so)
ROWS = 500

Converter = Callable[[Any], Any]


class _Never:
    """The type of no value: a column whose every value goes through its converter."""


def ready_type(field: models.Field) -> type:
    """The type whose values a column stores as they are (``converter`` would
    hand them back unchanged): the row skips the call for them."""
    kind = type(field.target_field) if type(field) is models.ForeignKey else type(field)
    if kind in (models.CharField, models.TextField):
        return str
    if kind in INTEGERS:
        return int
    if kind is models.BooleanField:
        return bool
    return _Never


INTEGERS = (
    models.IntegerField,
    models.PositiveIntegerField,
    models.BigIntegerField,
    models.AutoField,
    models.BigAutoField,
)


def converter(field: models.Field, connection: Any) -> Converter:
    """``field.get_db_prep_save`` for ``connection``, with a shortcut for the
    values whose preparation is known to change nothing (or only to go through
    the backend's adapter): exact str, int, bool, None, aware datetimes, and
    dicts and lists of a JSON field."""
    prep = field.get_db_prep_save
    kind = type(field)

    def slow(value: Any) -> Any:
        return prep(value, connection)

    if kind is models.JSONField:
        adapt_json, encoder = connection.ops.adapt_json_value, field.encoder

        def as_json(value: Any) -> Any:
            if value is None:
                return None
            if type(value) is dict or type(value) is list:
                return adapt_json(value, encoder)
            return prep(value, connection)

        return as_json
    if kind is models.DateTimeField:
        adapt_datetime = connection.ops.adapt_datetimefield_value
        last: list[Any] = [None, None]  # a page's rows share their timestamps: adapted once

        def as_datetime(value: Any) -> Any:
            if value is None:
                return None
            if value is last[0]:
                return last[1]
            if type(value) is dt.datetime and value.tzinfo is not None:
                last[:] = value, adapt_datetime(value)
                return last[1]
            return prep(value, connection)  # naive: Django's warning and conversion

        return as_datetime
    if kind in (models.CharField, models.TextField):
        # to_python keeps any str (a TextChoices member too) as it is
        def as_text(value: Any) -> Any:
            return value if value is None or isinstance(value, str) else prep(value, connection)

        return as_text
    if kind is models.ForeignKey:
        kind = type(field.target_field)
    if kind in INTEGERS:

        def as_int(value: Any) -> Any:
            return value if value is None or type(value) is int else prep(value, connection)

        return as_int
    if kind is models.BooleanField:

        def as_bool(value: Any) -> Any:
            return value if value is None or type(value) is bool else prep(value, connection)

        return as_bool
    return slow


class Table:
    """How to INSERT (and UPDATE) ``model``'s rows on one database."""

    def __init__(self, model: type[models.Model], using: str) -> None:
        self.model = model
        self.using = using
        self.connection = connection = connections[using]
        meta = model._meta
        self.pk = meta.pk
        #: what bulk_create inserts for objects without a pk: every concrete
        #: column but the auto pk and generated ones
        self.fields = [
            f
            for f in meta.concrete_fields
            if f is not meta.pk and not getattr(f, "generated", False)
        ]
        #: a column with a database default, or whose field prepares its value
        #: before a save (beyond a datetime's auto_now), is bulk_create's to handle
        self.plain = all(
            f.db_default is NOT_PROVIDED
            and (type(f).pre_save is models.Field.pre_save or type(f) is models.DateTimeField)
            for f in self.fields
        )
        self.attnames = [f.attname for f in self.fields]
        self.converters = [converter(f, connection) for f in self.fields]
        self.ready = [ready_type(f) for f in self.fields]
        #: stamped with now by an INSERT (auto_now, auto_now_add) and an UPDATE (auto_now)
        self.stamped = [
            f.attname
            for f in self.fields
            if type(f) is models.DateTimeField and (f.auto_now or f.auto_now_add)
        ]
        self.auto_now = [
            f.attname for f in self.fields if type(f) is models.DateTimeField and f.auto_now
        ]
        self.relations = [f for f in self.fields if f.is_relation]
        self.values = operator.attrgetter(*self.attnames)
        quote = connection.ops.quote_name
        self.table = quote(meta.db_table)
        self.columns = ", ".join(quote(f.column) for f in self.fields)
        self.returning = f"{self.table}.{quote(self.pk.column)}"

    def rows_per_statement(self) -> int:
        limit = self.connection.features.max_query_params
        if self.connection.vendor == "sqlite":
            self.connection.ensure_connection()
            raw = self.connection.connection
            if hasattr(raw, "getlimit"):  # Python 3.11+: the SQLite linked in, not Django's 999
                limit = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        if not limit:
            return ROWS
        return max(1, min(ROWS, limit // len(self.fields)))

    def row(self, obj: models.Model) -> list[Any]:
        values = self.values(obj)
        if len(self.attnames) == 1:
            values = (values,)
        return [
            value if type(value) is ready else convert(value)
            for value, ready, convert in zip(values, self.ready, self.converters, strict=True)
        ]

    def related(self, obj: models.Model) -> None:
        """As ``bulk_create`` does (``_prepare_related_fields_for_save``): a
        related object saved since it was assigned gives its pk; an unsaved
        one is refused."""
        for field in self.relations:
            other = field.get_cached_value(obj, None)
            if other is None:  # not assigned (only its id, if any), or assigned None
                continue
            if other.pk is None:
                raise ValueError(
                    f"bulk_create() prohibited to prevent data loss due to unsaved "
                    f"related object '{field.name}'."
                )
            if getattr(obj, field.attname) in field.empty_values:
                setattr(obj, field.name, other)
            if getattr(other, field.target_field.attname) != getattr(obj, field.attname):
                field.delete_cached_value(obj)

    def insert(self, objs: Sequence[models.Model]) -> None:
        """INSERT ``objs`` (none has a pk yet) and set their pks."""
        if not objs:
            return
        if (
            not self.plain
            or not self.connection.features.can_return_rows_from_bulk_insert
            or any(obj.pk is not None for obj in objs)
        ):
            self.model._default_manager.db_manager(self.using).bulk_create(objs, batch_size=ROWS)
            return
        now = timezone.now()
        rows = []
        for obj in objs:
            self.related(obj)
            for name in self.stamped:
                setattr(obj, name, now)
            rows.append(self.row(obj))
        size = self.rows_per_statement()
        one = "(" + ", ".join(["%s"] * len(self.fields)) + ")"
        with self.connection.cursor() as cursor:
            for start in range(0, len(rows), size):
                chunk = rows[start : start + size]
                sql = (
                    f"INSERT INTO {self.table} ({self.columns}) "
                    f"VALUES {', '.join([one] * len(chunk))} RETURNING {self.returning}"
                )
                cursor.execute(sql, [value for row in chunk for value in row])
                pks = cursor.fetchall()
                if len(pks) != len(chunk):  # pragma: no cover - the database broke its word
                    raise RuntimeError(f"INSERT of {len(chunk)} rows returned {len(pks)} ids")
                for obj, (pk,) in zip(objs[start : start + size], pks, strict=True):
                    obj.pk = pk
                    obj._state.adding = False
                    obj._state.db = self.using

    def update(self, objs: Sequence[models.Model], names: Sequence[str]) -> None:
        """UPDATE ``names`` of saved ``objs`` in one ``executemany`` (auto_now
        fields among them take now, as ``save(update_fields=…)`` does; an
        auto_now_add one keeps its value)."""
        if not objs:
            return
        meta = self.model._meta
        fields = [meta.get_field(name) for name in names]
        convert = [self.converters[self.fields.index(f)] for f in fields]
        attnames = [f.attname for f in fields]
        stamped = [f.attname for f in fields if f.attname in self.auto_now]
        quote = self.connection.ops.quote_name
        sql = "UPDATE {} SET {} WHERE {} = %s".format(
            self.table,
            ", ".join(f"{quote(f.column)} = %s" for f in fields),
            quote(self.pk.column),
        )
        now = timezone.now()
        rows = []
        for obj in objs:
            for name in stamped:
                setattr(obj, name, now)
            rows.append([c(getattr(obj, n)) for c, n in zip(convert, attnames, strict=True)])
            rows[-1].append(obj.pk)
        with self.connection.cursor() as cursor:
            cursor.executemany(sql, rows)


class Factory:
    """``model(**values)`` for the many objects of a page, built the way
    Django builds a row it reads (positional values: no per-field look-up of
    keyword arguments), with the defaults ``model()`` would give the columns
    not named. A related object (``link=...``) is set as the keyword form sets
    it: its id, the cached object, the database the two share (without
    database routers, directly; with them, through the descriptor)."""

    def __init__(self, model: type[models.Model]) -> None:
        self.model = model
        fields = model._meta.concrete_fields
        #: the defaults of the columns not named: fixed ones once, callables per object
        self.template: list[Any] = []
        self.calls: list[tuple[int, Callable[[], Any]]] = []
        self.position: dict[str, int] = {}
        #: a relation's name (``link``) → its field and its column's position (``link_id``)
        self.relations: dict[str, tuple[Any, int]] = {}
        for i, field in enumerate(fields):
            self.position[field.attname] = i
            if field.is_relation:
                self.relations[field.name] = (field, i)
            if field.has_default() and callable(field.default):
                self.template.append(None)
                self.calls.append((i, field.default))
            else:
                self.template.append(field.get_default())

    def __call__(self, **values: Any) -> models.Model:
        row = self.template.copy()
        given = set()
        related: list[tuple[Any, Any]] = []
        for name, value in values.items():
            i = self.position.get(name)
            if i is None:
                field, i = self.relations[name]  # KeyError: not a column of the model
                related.append((field, value))
                if value is not None:
                    value = getattr(value, field.target_field.attname)
            row[i] = value
            given.add(i)
        for i, default in self.calls:
            if i not in given:
                row[i] = default()
        obj = self.model(*row)
        if related:
            self.relate(obj, related)
        return obj

    def relate(self, obj: models.Model, related: list[tuple[Any, Any]]) -> None:
        if router.routers:
            for field, value in related:
                setattr(obj, field.name, value)  # the descriptor asks the routers
            return
        # what ForwardManyToOneDescriptor.__set__ does when no router has a say
        for field, value in related:
            if value is not None:
                if not isinstance(value, field.remote_field.model._meta.concrete_model):
                    setattr(obj, field.name, value)  # its own error
                if obj._state.db is None:
                    obj._state.db = value._state.db or DEFAULT_DB_ALIAS
                if value._state.db is None:
                    value._state.db = obj._state.db
                if value._state.db != obj._state.db:
                    setattr(obj, field.name, value)  # its own error
            field.set_cached_value(obj, value)


def insert(objs: Sequence[models.Model], using: str | None = None) -> None:
    """INSERT new objects of one model, setting their pks (see ``Table.insert``)."""
    if objs:
        model = type(objs[0])
        Table(model, using or model._default_manager.db).insert(objs)


def update(objs: Sequence[models.Model], names: Sequence[str], using: str | None = None) -> None:
    """UPDATE ``names`` of saved objects of one model (see ``Table.update``)."""
    if objs:
        model = type(objs[0])
        Table(model, using or model._default_manager.db).update(objs, names)
