"""The catalog: create declared tables, read every table's columns, refuse what cannot be filled."""

from twisted.logger import Logger

from attolytics.columns import converter_for
from attolytics.config import Config, TableDecl
from attolytics.table import Column, Table, quote_ident

log = Logger()


class SchemaError(Exception):
    """The database does not fit the configuration; the message names file, table and column."""


_RELATION_SQL = "SELECT c.oid, c.relkind FROM pg_class c WHERE c.oid = to_regclass(%s)"

_COLUMNS_SQL = """
SELECT a.attname, t.typname, format_type(a.atttypid, a.atttypmod), a.atttypmod,
       a.attnotnull, a.atthasdef OR a.attidentity <> '', a.attgenerated <> '' OR a.attidentity = 'a'
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

_INSERTABLE_KINDS = {"r", "p"}  # ordinary and partitioned tables


def create_table_sql(table: TableDecl) -> str:
    """The CREATE TABLE IF NOT EXISTS statement for a declared table."""
    columns = ", ".join(
        f"{quote_ident(c.name)} {c.ddl_type}{' NOT NULL' if c.required else ''}"
        for c in table.columns
    )
    return f"CREATE TABLE IF NOT EXISTS {quote_ident(table.name)} ({columns})"


async def load_tables(db, config: Config) -> dict[str, Table]:
    """Create the declared tables that are missing, then describe every table the config names.

    `db` runs queries (runQuery/runOperation returning Deferreds). Raises SchemaError.
    """
    for declared in config.tables.values():
        await db.runOperation(create_table_sql(declared))
    tables = {}
    for name in config.table_names():
        tables[name] = await _describe_table(db, config, name)
        log.info("table {table}: columns {columns}", table=name, columns=", ".join(tables[name].columns))
    return tables


async def _describe_table(db, config: Config, name: str) -> Table:
    relation = await db.runQuery(_RELATION_SQL, (quote_ident(name),))
    if not relation:
        raise SchemaError(
            f"{config.path}: table {name!r} ({_users_of(config, name)}) does not exist in the "
            f"database and is not declared under tables:"
        )
    oid, kind = relation[0]
    if kind not in _INSERTABLE_KINDS:
        raise SchemaError(f"{config.path}: {name!r} ({_users_of(config, name)}) is not a table")
    columns, fixed = [], {}
    for attname, typname, sql_type, typmod, not_null, has_default, generated in await db.runQuery(
        _COLUMNS_SQL, (oid,)
    ):
        convert = converter_for(typname, typmod)
        if generated or (convert is None and has_default):
            fixed[attname] = f"column {attname!r} ({sql_type}) is filled by PostgreSQL and cannot be sent"
        elif convert is None:
            raise SchemaError(
                f"{config.path}: table {name!r}, column {attname!r}: type {sql_type} cannot be "
                f"filled from JSON; give it a default or change its type"
            )
        else:
            columns.append(Column(attname, sql_type, not_null, has_default, convert))
    return Table(name, columns, fixed)


def _users_of(config: Config, table: str) -> str:
    users = [
        f"event type {type_id!r} of app {app.app_id!r}"
        for app in config.apps.values()
        for type_id, target in app.event_types.items()
        if target == table
    ]
    return ", ".join(users) or "declared under tables:"
