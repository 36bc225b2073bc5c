"""Hand-written reads for the path every turn takes.

Compiling an ORM query costs this process several times what SQLite then takes to answer
it (about 0.4 ms against 0.03 ms for a one-row SELECT on the benchmark machine), and a
turn start runs in the one database thread that every socket shares. The few reads on
that path are written here in SQL, over the models' own table and column names, and come
back as the ORM would return them. Everything else uses the ORM.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model

M = TypeVar("M", bound=Model)


def database() -> BaseDatabaseWrapper:
    """This thread's connection (one lookup, instead of one per attribute of the proxy)."""
    return connections[DEFAULT_DB_ALIAS]


def column(db: BaseDatabaseWrapper, model: type[Model], field: str) -> str:
    return db.ops.quote_name(model._meta.get_field(field).column)


def table(db: BaseDatabaseWrapper, model: type[Model]) -> str:
    return db.ops.quote_name(model._meta.db_table)


def one(
    db: BaseDatabaseWrapper,
    model: type[M],
    clauses: str,
    params: Sequence[Any],
    *,
    for_update: bool = False,
) -> M | None:
    """`SELECT <every column of model> FROM <its table> <clauses>`: the first row, as an
    instance built through the columns' converters (booleans, datetimes, UUIDs)."""
    meta = model._meta
    fields = meta.concrete_fields
    sql = (
        f"SELECT {', '.join(db.ops.quote_name(f.column) for f in fields)} "
        f"FROM {table(db, model)} {clauses}"
    )
    if for_update and db.features.has_select_for_update:
        sql += " FOR UPDATE"
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        values = cursor.fetchone()
    if values is None:
        return None
    converted = []
    for field, value in zip(fields, values, strict=True):
        col = field.get_col(meta.db_table)
        for converter in db.ops.get_db_converters(col) + col.get_db_converters(db):
            value = converter(value, col, db)
        converted.append(value)
    return model.from_db(db.alias, [f.attname for f in fields], converted)


def all_values(db: BaseDatabaseWrapper, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Plain rows of a hand-written SELECT (for columns that need no converter: text)."""
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()
