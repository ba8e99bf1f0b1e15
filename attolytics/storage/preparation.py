"""The tables of a configuration, made ready at start-up: check each against the database, create
what is declared and missing, and describe every table the service writes to.

One walk serves start-up and `python -m attolytics check`: plan_tables() reads and changes
nothing; prepare_tables() applies the plan when nothing stands in its way.
"""

from dataclasses import dataclass, field
from datetime import datetime, timezone

import psycopg2
from twisted.internet.defer import Deferred

from attolytics.config import Config, TableDecl
from attolytics.logs import logger
from attolytics.storage import catalog, partitions
from attolytics.storage.column_types import for_catalog
from attolytics.storage.ddl import (
    add_column_sql,
    create_index_sql,
    create_table_sql,
    declared_mismatches,
    missing_columns,
    unique_key,
)
from attolytics.storage.declarations import DeclaredTypes
from attolytics.storage.identifiers import index_name, quote_in_schema, quote_name, quote_table, schema_of
from attolytics.storage.table import Column, Table

log = logger(__name__)

# The advisory lock that services sharing a database take to change its tables, one at a time.
SCHEMA_LOCK = 0x4174746F6C797400


class SchemaError(Exception):
    """The database does not fit the configuration; the message names file, table and column."""

    def lines(self) -> list[str]:
        """The problem as `check` reports it, a line per fact."""
        return [str(self)]


class Mismatch(SchemaError):
    """A declared table that exists and differs from its declaration."""

    def __init__(self, config: Config, table: str, details: list[str]):
        super().__init__(f"{config.path}: table {table!r} exists but does not match its declaration: "
                         + "; ".join(details))
        self._lines = [f"{config.path}: table {table!r}: {detail}" for detail in details]

    def lines(self) -> list[str]:
        return self._lines


@dataclass
class Statement:
    """A DDL statement of the plan: what it makes (a table, its index, its new column or a
    partition, in `schema` when not the table's), for the log once it ran."""

    sql: str
    table: str
    index: str | None = None
    column: str | None = None
    partition: str | None = None
    schema: str | None = None
    # The statement makes `schema` itself, for the table.
    makes_schema: bool = False

    def made_query(self) -> tuple[str, tuple]:
        """The query (SQL, parameters) of whether what the statement makes exists already."""
        if self.makes_schema:
            return _SCHEMA_EXISTS, (self.schema,)
        if self.column is not None:
            return ("SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass(%s) "
                    "AND attname = %s AND NOT attisdropped)", (quote_table(self.table), self.column))
        if self.index is None and self.partition is None:
            return "SELECT to_regclass(%s) IS NOT NULL", (quote_table(self.table),)
        relation = quote_in_schema(self.schema or schema_of(self.table), self.index or self.partition)
        return "SELECT to_regclass(%s) IS NOT NULL", (relation,)

    def log_done(self) -> None:
        """Log that the statement ran."""
        if self.makes_schema:
            log.info("created schema {schema} for {table}", schema=self.schema, table=self.table)
        elif self.partition is not None:
            log.info("created partition {partition} of {table}: {sql}", partition=self.partition,
                     table=self.table, sql=self.sql)
        elif self.index is not None:
            log.info("created index {index} on {table}", index=self.index, table=self.table)
        elif self.column is not None:
            log.info("added column {column} to {table}", column=self.column, table=self.table)
        else:
            log.info("created table {table}", table=self.table)


@dataclass
class TablesPlan:
    """What start-up would do to the database, and what would stop it."""

    statements: list[Statement] = field(default_factory=list)
    problems: list[SchemaError] = field(default_factory=list)
    # The tables that exist already, described; the declared tables the statements create, and
    # those they add columns to.
    tables: dict[str, Table] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    altered: list[str] = field(default_factory=list)
    # The DROP statements of partitions past `keep`, which the upkeep after start-up runs.
    drops: list[str] = field(default_factory=list)


async def plan_tables(db, config: Config, types: DeclaredTypes, clock) -> TablesPlan:
    """Check every table against the configuration, changing nothing.

    `db` runs queries (runQuery returning a Deferred of rows); `types` are the declared columns'
    types (storage.declarations); `clock.seconds()` is now, for the partitions a table needs.
    """
    plan = TablesPlan()
    now = datetime.fromtimestamp(clock.seconds(), timezone.utc)
    catalogs, unreadable = {}, set()
    for declared in config.tables.values():
        try:
            catalogs[declared.name] = await _read(db, config, declared.name)
        except SchemaError as e:
            plan.problems.append(e)
            unreadable.add(declared.name)
            continue
        await _plan_declared(db, config, declared, types, catalogs[declared.name], plan)
        if declared.partition is not None:
            await _plan_partitions(db, config, declared, types, catalogs[declared.name], now, plan)
    for name in config.table_names():
        if name in plan.created or name in plan.altered or name in unreadable:
            continue  # made or changed from its declaration, which is checked; or named above
        try:
            found = catalogs[name] if name in catalogs else await _read(db, config, name)
            if found is None:
                raise SchemaError(
                    f"{config.path}: table {name!r} ({_users_of(config, name)}) does not exist in the "
                    f"database and is not declared in the tables section"
                )
            plan.tables[name] = _describe(config, name, found, clock)
            if name in config.skip_duplicates:
                await _check_key(db, config, name)
        except SchemaError as e:
            plan.problems.append(e)
    return plan


async def prepare_tables(db, config: Config, types: DeclaredTypes, clock) -> dict[str, Table]:
    """Start-up: refuse a database that does not fit (SchemaError, with nothing changed), else
    run the plan's DDL and describe every table the service writes to, by name.

    `db` also runs interactions (runInteraction).
    """
    plan = await plan_tables(db, config, types, clock)
    if plan.problems:
        raise plan.problems[0]
    if plan.statements:
        # Only what this service made is logged: services sharing the database (workers) plan
        # the same statements, and one of them makes each thing.
        for statement in await db.runInteraction(_apply, config, plan.statements):
            statement.log_done()
    for name in plan.created + plan.altered:
        plan.tables[name] = _describe(config, name, await _read(db, config, name), clock)
    tables = {name: plan.tables[name] for name in config.table_names()}
    for table in tables.values():
        log.info("table {table}: columns {columns}", table=table.name, columns=", ".join(table.columns))
    return tables


def _apply(cursor, config: Config, statements: list[Statement]) -> Deferred:
    """Run the statements in one transaction: all of them, or (SchemaError) none; a Deferred of
    those that made something. Services sharing the database take turns: a statement whose
    object another service made while this one waited for its turn is left out."""
    async def run():
        await cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        made = []
        for statement in statements:
            await cursor.execute(*statement.made_query())
            if cursor.fetchone()[0]:
                continue
            made.append(statement)
            try:
                await cursor.execute(statement.sql)
            except psycopg2.Error as e:
                if e.pgcode is None:  # the connection, not the statement: start-up tries again
                    raise
                raise SchemaError(f"{config.path}: table {statement.table!r}: {statement.sql} failed: "
                                  f"{str(e).strip()}") from None
        return made

    return Deferred.fromCoroutine(run())


async def _plan_declared(db, config: Config, declared: TableDecl, types: DeclaredTypes,
                         found, plan: TablesPlan) -> None:
    """Plan one declared table: create it and its indexes when missing, else check it and add
    the columns it lacks."""
    table_types = types[declared.name]
    for column in declared.columns:
        if column.default is not None:
            await _check_default(db, config, declared, column, table_types[column.name], plan)
    if found is None:
        plan.created.append(declared.name)
        await _plan_schema(db, declared.name, plan)
        plan.statements.append(Statement(create_table_sql(declared, table_types), declared.name))
    else:
        mismatches = declared_mismatches(declared, table_types, found)
        mismatches += await _plan_new_columns(db, declared, table_types, found, plan)
        if mismatches:
            plan.problems.append(Mismatch(config, declared.name, mismatches))
    for column in declared.columns:
        if column.unique:
            await _plan_unique_index(db, config, declared, column, found, plan)
        elif column.indexed:
            index = index_name(declared.name, column.name)
            if found is None or not await catalog.has_relation_beside(db, declared.name, index):
                plan.statements.append(Statement(create_index_sql(declared, column), declared.name, index))


# Whether a schema exists.
_SCHEMA_EXISTS = "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = %s)"


async def _plan_schema(db, table: str, plan: TablesPlan) -> None:
    """Plan CREATE SCHEMA for a table to be made in a schema that does not exist (nor is planned)."""
    schema = schema_of(table)
    if schema is None or any(s.makes_schema and s.schema == schema for s in plan.statements):
        return
    if not (await db.runQuery(_SCHEMA_EXISTS, (schema,)))[0][0]:
        plan.statements.append(Statement(f"CREATE SCHEMA {quote_name(schema)}", table, schema=schema,
                                         makes_schema=True))


async def _plan_new_columns(db, declared: TableDecl, table_types, found, plan: TablesPlan) -> list[str]:
    """Plan ADD COLUMN for the declared columns the table lacks; what cannot be added (NOT NULL
    without a default, on a table with rows) is a mismatch."""
    missing = missing_columns(declared, found)
    refused = [c for c in missing if c.required and c.default is None]
    if refused and not await catalog.has_rows(db, declared.name):
        refused = []
    for column in missing:
        if column not in refused:
            plan.statements.append(Statement(add_column_sql(declared, column, table_types[column.name]),
                                             declared.name, column=column.name))
    if missing and declared.name not in plan.altered:
        plan.altered.append(declared.name)
    return [f"column {c.name!r} ({table_types[c.name].ddl} NOT NULL) is missing, and cannot be added to "
            f"a table that has rows without a default" for c in refused]


async def _check_default(db, config: Config, declared: TableDecl, column, column_type, plan: TablesPlan):
    """A column's default must be a value of its type: PostgreSQL reads it to tell."""
    try:
        await db.runQuery(f"SELECT %s::{column_type.ddl}", (column.default,))
    except psycopg2.Error as e:
        if e.pgcode is None:
            raise
        plan.problems.append(SchemaError(
            f"{config.path}: {column.key}.default: {column.default!r} is not a value of type "
            f"{column_type.ddl}: {(getattr(e.diag, 'message_primary', None) or str(e)).strip()}"))


async def _plan_unique_index(db, config: Config, declared: TableDecl, column, found, plan: TablesPlan):
    """A unique column needs a unique index on it alone: one that exists will do (a primary key,
    say), else Attolytics makes <table>_<column>_key."""
    index = index_name(declared.name, column.name, "key")
    key = unique_key(declared)
    if found is not None and frozenset(key) in await catalog.unique_keys(db, declared.name):
        return
    if found is not None and await catalog.has_relation_beside(db, declared.name, index):
        plan.problems.append(SchemaError(
            f"{config.path}: table {declared.name!r}: {index} exists but is not a unique index on "
            f"({', '.join(key)}) alone, which skipping duplicates needs"))
        return
    plan.statements.append(Statement(create_index_sql(declared, column), declared.name, index))


async def _plan_partitions(db, config: Config, declared: TableDecl, types: DeclaredTypes, found,
                           now: datetime, plan: TablesPlan) -> None:
    """A partitioned table has, from start-up on, the partitions of the current interval and of
    those `ahead`; an existing one must be partitioned by range on the declared column."""
    decl = declared.partition
    schema, found_partitions = schema_of(declared.name), []
    if found is not None:
        key = await catalog.partition_key(db, declared.name)
        if key != ("range", [decl.column]):
            how = "is not partitioned" if key is None else f"is partitioned by {key[0]} ({', '.join(key[1])})"
            plan.problems.append(Mismatch(config, declared.name, [
                f"it {how}, and is declared partitioned by range ({decl.column}); a table cannot be "
                f"partitioned once made: rename it, let Attolytics create it, and copy its rows over"]))
            return
        schema, found_partitions = await catalog.partitions(db, declared.name)
        plan.drops += [partitions.drop_sql(p.schema, p.name)
                       for p in partitions.expired(declared.name, found_partitions, now, decl)]
    with_zone = types[declared.name][decl.column].with_zone
    creates, problems = partitions.creations(declared.name, schema, decl, with_zone,
                                             partitions.wanted_starts(now, decl), found_partitions)
    if problems:
        plan.problems.append(Mismatch(config, declared.name, problems))
    plan.statements += [Statement(sql, declared.name, partition=name, schema=schema) for name, sql in creates]


async def _check_key(db, config: Config, name: str) -> None:
    """A user-made table that skips duplicates needs a unique index or primary key on exactly
    the columns skip_duplicates names."""
    key = config.skip_duplicates[name]
    if frozenset(key) not in await catalog.unique_keys(db, name):
        raise SchemaError(
            f"{config.path}: table {name!r}: skip_duplicates ({', '.join(key)}) needs a unique index "
            f"or primary key on exactly these columns, and the table has none; make one, such as "
            f"CREATE UNIQUE INDEX ON {name} ({', '.join(key)})")


async def _read(db, config: Config, name: str):
    """The table's catalog columns, or None; SchemaError when it is not a table."""
    try:
        return await catalog.table_columns(db, name)
    except catalog.NotATable:
        raise SchemaError(f"{config.path}: {name!r} ({_users_of(config, name)}) is not a table") from None


def _describe(config: Config, name: str, found: list, clock) -> Table:
    """The Table that turns events into rows for an existing table; SchemaError for a column
    that cannot be filled from JSON and has no default."""
    declared = config.tables.get(name)
    declared_columns = {c.name: c for c in declared.columns} if declared else None
    columns, fixed = [], {}
    for column in found:
        column_type = for_catalog(column.typname, column.typmod)
        if declared_columns is not None and column.name not in declared_columns:
            # Only declared columns are part of the API of a declared table.
            fixed[column.name] = f"column {column.name!r} is not declared in {config.path}"
        elif column.generated or (column_type is None and column.has_default):
            fixed[column.name] = (
                f"column {column.name!r} ({column.sql_type}) is filled by PostgreSQL and cannot be sent"
            )
        elif column_type is None:
            raise SchemaError(
                f"{config.path}: table {name!r}, column {column.name!r}: type {column.sql_type} "
                f"cannot be filled from JSON; give it a default or change its type"
            )
        else:
            decl = declared_columns.get(column.name) if declared_columns else None
            columns.append(Column(column.name, column.sql_type, column_type, column.not_null,
                                  column.has_default, decl and decl.header, decl and decl.source,
                                  bool(decl and decl.anonymize)))
    key = _key(config, name, declared)
    fillable = {c.name for c in columns if c.request_key is None}
    for column in key:
        if column not in fillable:
            problem = "which events cannot fill" if column in fixed else "which the table does not have"
            raise SchemaError(f"{config.path}: table {name!r}: skip_duplicates names column "
                              f"{column!r}, {problem}")
    accepted = None
    if declared is not None and declared.partition is not None:
        column = declared.partition.column
        with_zone = next(c.type.with_zone for c in columns if c.name == column)
        accepted = (column, partitions.AcceptedRange(declared.partition, clock, with_zone))
    return Table(name, columns, fixed, key, accepted)


def _key(config: Config, name: str, declared: TableDecl | None) -> tuple[str, ...]:
    """The columns that identify an event of the table: its unique column (and partition
    column), or skip_duplicates."""
    if declared is not None:
        return unique_key(declared)
    return config.skip_duplicates.get(name, ())


def _users_of(config: Config, table: str) -> str:
    users = [
        f"event type {type_id!r} of app {app.app_id!r}"
        for app in config.apps.values()
        for type_id, target in app.event_types.items()
        if target == table
    ]
    users += [f"segment calls of app {app.app_id!r}" for app in config.apps.values()
              if app.segment is not None and schema_of(table) == app.segment.schema]
    return ", ".join(users) or "declared in the tables section"
