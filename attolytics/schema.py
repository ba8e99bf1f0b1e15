"""The catalog: create or check declared tables and their indexes, and describe every table."""

import hashlib
from typing import NamedTuple

from attolytics.columns import converter_for
from attolytics.config import ColumnDecl, Config, TableDecl
from attolytics.logs import logger
from attolytics.table import Column, Table, quote_name, quote_table

log = logger(__name__)


class SchemaError(Exception):
    """The database does not fit the configuration; the message names file, table and column."""


class CatalogColumn(NamedTuple):
    """A column as pg_attribute describes it."""

    name: str
    typname: str
    sql_type: str  # format_type(): "character varying(20)", "numeric(10,2)", ...
    typmod: int
    not_null: bool
    has_default: bool
    generated: bool  # GENERATED ... STORED, or an identity column that refuses values


_RELATION_SQL = "SELECT c.oid, c.relkind FROM pg_class c WHERE c.oid = to_regclass(%s)"

_COLUMNS_SQL = """
SELECT a.attname, t.typname, format_type(a.atttypid, a.atttypmod), a.atttypmod,
       a.attnotnull, a.atthasdef OR a.attidentity <> '', a.attgenerated <> '' OR a.attidentity = 'a'
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

_INSERTABLE_KINDS = {"r", "p"}  # ordinary and partitioned tables
_MAX_IDENTIFIER_BYTES = 63


def create_table_sql(table: TableDecl) -> str:
    """The CREATE TABLE IF NOT EXISTS statement for a declared table."""
    columns = ", ".join(
        f"{quote_name(c.name)} {c.ddl_type}{' NOT NULL' if c.required else ''}"
        for c in table.columns
    )
    return f"CREATE TABLE IF NOT EXISTS {quote_table(table.name)} ({columns})"


def index_name(table: str, column: str) -> str:
    """A stable index name for an `indexed` column, within PostgreSQL's 63-byte limit."""
    name = f"{table.split('.', 1)[-1]}_{column}_idx"
    if len(name.encode()) <= _MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.sha1(f"{table}\0{column}".encode()).hexdigest()[:8]
    head = name.encode()[: _MAX_IDENTIFIER_BYTES - 9].decode(errors="ignore")
    return f"{head}_{digest}"


def create_index_sql(table: TableDecl, column: ColumnDecl) -> str:
    """The CREATE INDEX IF NOT EXISTS statement for an `indexed` column."""
    return (
        f"CREATE INDEX IF NOT EXISTS {quote_name(index_name(table.name, column.name))} "
        f"ON {quote_table(table.name)} ({quote_name(column.name)})"
    )


async def load_tables(db, config: Config) -> dict[str, Table]:
    """Create missing declared tables, check existing ones, create indexes, describe every table.

    `db` runs queries (runQuery/runOperation returning Deferreds). Raises SchemaError.
    """
    for declared in config.tables.values():
        catalog = await _catalog(db, config, declared.name)
        if catalog is None:
            await db.runOperation(create_table_sql(declared))
            log.info("created table {table}", table=declared.name)
        else:
            problems = declared_mismatches(declared, catalog)
            if problems:
                raise SchemaError(
                    f"{config.path}: table {declared.name!r} exists but does not match its "
                    f"declaration: " + "; ".join(problems)
                )
        for column in declared.columns:
            if column.indexed:
                await db.runOperation(create_index_sql(declared, column))
    tables = {}
    for name in config.table_names():
        catalog = await _catalog(db, config, name)
        if catalog is None:
            raise SchemaError(
                f"{config.path}: table {name!r} ({_users_of(config, name)}) does not exist in the "
                f"database and is not declared in the tables section"
            )
        tables[name] = _table(config, name, catalog)
        log.info("table {table}: columns {columns}", table=name, columns=", ".join(tables[name].columns))
    return tables


async def _catalog(db, config: Config, name: str) -> list[CatalogColumn] | None:
    """The table's columns, or None when there is no such relation."""
    relation = await db.runQuery(_RELATION_SQL, (quote_table(name),))
    if not relation:
        return None
    oid, kind = relation[0]
    if kind not in _INSERTABLE_KINDS:
        raise SchemaError(f"{config.path}: {name!r} ({_users_of(config, name)}) is not a table")
    return [CatalogColumn(*row) for row in await db.runQuery(_COLUMNS_SQL, (oid,))]


def declared_mismatches(declared: TableDecl, catalog: list[CatalogColumn]) -> list[str]:
    """What differs between a declared table and the existing one; empty when they fit."""
    existing = {column.name: column for column in catalog}
    problems = []
    for column in declared.columns:
        found = existing.get(column.name)
        if found is None:
            problems.append(f"column {column.name!r} ({column.ddl_type}) is missing")
        elif found.sql_type != column.ddl_type:
            problems.append(
                f"column {column.name!r} is declared {column.ddl_type} but is {found.sql_type}"
            )
        elif column.required and not found.not_null:
            problems.append(f"column {column.name!r} is declared required but allows NULL")
    declared_names = {column.name for column in declared.columns}
    for found in catalog:
        if found.name not in declared_names and found.not_null and not found.has_default:
            problems.append(
                f"column {found.name!r} ({found.sql_type} NOT NULL, no default) is not declared, "
                f"so no event could be stored"
            )
    return problems


def _table(config: Config, name: str, catalog: list[CatalogColumn]) -> Table:
    declared = config.tables.get(name)
    declared_columns = {c.name: c for c in declared.columns} if declared else None
    columns, fixed = [], {}
    for found in catalog:
        convert = converter_for(found.typname, found.typmod)
        if declared_columns is not None and found.name not in declared_columns:
            # Only declared columns are part of the API of a declared table.
            fixed[found.name] = f"column {found.name!r} is not declared in {config.path}"
        elif found.generated or (convert is None and found.has_default):
            fixed[found.name] = (
                f"column {found.name!r} ({found.sql_type}) is filled by PostgreSQL and cannot be sent"
            )
        elif convert is None:
            raise SchemaError(
                f"{config.path}: table {name!r}, column {found.name!r}: type {found.sql_type} "
                f"cannot be filled from JSON; give it a default or change its type"
            )
        else:
            header = declared_columns[found.name].header if declared_columns else None
            columns.append(
                Column(found.name, found.sql_type, found.typname, found.not_null, found.has_default,
                       convert, header)
            )
    return Table(name, columns, fixed)


def _users_of(config: Config, table: str) -> str:
    users = [
        f"event type {type_id!r} of app {app.app_id!r}"
        for app in config.apps.values()
        for type_id, target in app.event_types.items()
        if target == table
    ]
    return ", ".join(users) or "declared in the tables section"


async def plan_tables(db, config: Config) -> tuple[list[str], list[str]]:
    """What start-up would do, without doing it: (the DDL it would run, the problems that
    would stop it). For `python -m attolytics check`."""
    ddl, problems = [], []
    missing = set()
    for declared in config.tables.values():
        try:
            catalog = await _catalog(db, config, declared.name)
        except SchemaError as e:
            problems.append(str(e))
            continue
        if catalog is None:
            missing.add(declared.name)
            ddl.append(create_table_sql(declared))
        else:
            problems.extend(
                f"{config.path}: table {declared.name!r}: {problem}"
                for problem in declared_mismatches(declared, catalog)
            )
        for column in declared.columns:
            if column.indexed and (
                declared.name in missing
                or not (await db.runQuery(_INDEX_SQL, (quote_name(index_name(declared.name, column.name)),)))[0][0]
            ):
                ddl.append(create_index_sql(declared, column))
    for name in config.table_names():
        if name in missing:
            continue  # created from its declaration, which is checked already
        try:
            catalog = await _catalog(db, config, name)
            if catalog is None:
                raise SchemaError(
                    f"{config.path}: table {name!r} ({_users_of(config, name)}) does not exist in the "
                    f"database and is not declared in the tables section"
                )
            _table(config, name, catalog)
        except SchemaError as e:
            problems.append(str(e))
    return ddl, problems


_INDEX_SQL = "SELECT to_regclass(%s) IS NOT NULL"
