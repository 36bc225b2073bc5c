"""Hand-written statements for the path every turn takes.

Compiling an ORM query costs this process several times what SQLite then takes to answer
it (about 0.4 ms against 0.03 ms for a one-row SELECT on the benchmark machine), and a
turn start runs in the one database thread that every socket shares. Round 4 of
docs/performance.md measured this module against the plain ORM for the same statements.

The rule that decides what uses it: **every statement a send makes on its common path,
from the turn's start to its reply's final save and its conversation's generated title,
is written here, and any other action that makes the same statement calls the same
helper.** That is the credential, the conversation row (locked) and its activity time and
shown leaf, the turn's INSERTs (the question, then its reply), the history (one recursive
query up the parents), the checkpoints, the final save and its search entries, the title
and its index entry. So regenerate and edit, which are turns too, lock the row, insert,
touch the activity time and read the history through the same helpers as a send, and a
rename writes the title's index entry as a generated title does. What a send makes only
off its common path (the once-a-minute `last_used_at`, the resend and reaper queries
after a refused INSERT), and what only other actions make (regenerate's and edit's own
reads and superseding UPDATEs, pages, the admin), uses the ORM. SQL here uses the models'
own table and column names; values go in and come back through the fields' own
conversions, as with the ORM.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from django.db.models.constants import OnConflict

M = TypeVar("M", bound=Model)


def database() -> BaseDatabaseWrapper:
    """This thread's connection (one lookup, instead of one per attribute of the proxy)."""
    return connections[DEFAULT_DB_ALIAS]


def column(db: BaseDatabaseWrapper, model: type[Model], field: str) -> str:
    return db.ops.quote_name(model._meta.get_field(field).column)


def table(db: BaseDatabaseWrapper, model: type[Model]) -> str:
    return db.ops.quote_name(model._meta.db_table)


def by_pk(db: BaseDatabaseWrapper, model: type[Model]) -> str:
    """`WHERE <primary key> = %s`, for `one` and `update`."""
    return f"WHERE {db.ops.quote_name(model._meta.pk.column)} = %s"


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


def update(
    db: BaseDatabaseWrapper,
    model: type[Model],
    values: dict[str, Any],
    where: str,
    params: Sequence[Any],
) -> int:
    """`UPDATE <table> SET <values> <where>`; returns the number of rows changed. Values
    are prepared by their fields, as `QuerySet.update` prepares them."""
    meta = model._meta
    assignments, prepared = [], []
    for name, value in values.items():
        field = meta.get_field(name)
        assignments.append(f"{db.ops.quote_name(field.column)} = %s")
        prepared.append(field.get_db_prep_save(value, db))
    with db.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table(db, model)} SET {', '.join(assignments)} {where}",
            [*prepared, *params],
        )
        return cursor.rowcount


def insert(
    db: BaseDatabaseWrapper, objs: Sequence[Model], *, ignore_conflicts: bool = False
) -> int:
    """One multi-row INSERT of new instances of one model, as `bulk_create` writes it:
    values through the fields' `pre_save` (defaults, `auto_now_add`) and conversions.
    Sets the primary keys from `RETURNING`, in list order; with `ignore_conflicts`, rows a
    unique index refuses are skipped and no key is read. Returns the rows inserted."""
    if not objs:
        return 0
    meta = objs[0]._meta
    fields = [f for f in meta.local_concrete_fields if not f.primary_key and not f.generated]
    on_conflict = OnConflict.IGNORE if ignore_conflicts else None
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = (
        f"{db.ops.insert_statement(on_conflict=on_conflict)} {table(db, type(objs[0]))} "
        f"({', '.join(db.ops.quote_name(f.column) for f in fields)}) "
        f"VALUES {', '.join([row] * len(objs))}"
    )
    suffix = db.ops.on_conflict_suffix_sql(fields, on_conflict, None, None)
    if suffix:
        sql += f" {suffix}"
    if not ignore_conflicts:
        sql += f" RETURNING {db.ops.quote_name(meta.pk.column)}"
    params = [f.get_db_prep_save(f.pre_save(obj, True), db) for obj in objs for f in fields]
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        keys = [] if ignore_conflicts else [key for (key,) in cursor.fetchall()]
        inserted = cursor.rowcount if ignore_conflicts else len(keys)
    for obj, key in zip(objs, keys, strict=False):
        obj.pk = key
    for obj in objs:
        obj._state.adding = False
        obj._state.db = db.alias
    return inserted
