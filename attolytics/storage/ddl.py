"""Declared tables in SQL: the CREATE and ALTER statements for them, and how an existing table
differs from its declaration."""

from typing import Mapping

from attolytics.config import ColumnDecl, TableDecl
from attolytics.storage.catalog import CatalogColumn
from attolytics.storage.column_types import ColumnType
from attolytics.storage.identifiers import index_name, quote_name, quote_table


def column_sql(column: ColumnDecl, column_type: ColumnType) -> str:
    """A column's definition: name, type, DEFAULT and NOT NULL."""
    default = f" DEFAULT {default_sql(column, column_type)}" if column.default is not None else ""
    return f"{quote_name(column.name)} {column_type.ddl}{default}{' NOT NULL' if column.required else ''}"


def default_sql(column: ColumnDecl, column_type: ColumnType) -> str:
    """A column's default as a literal cast to its type: '0'::bigint."""
    return "'" + column.default.replace("'", "''") + f"'::{column_type.ddl}"


def create_table_sql(table: TableDecl, types: Mapping[str, ColumnType]) -> str:
    """The CREATE TABLE IF NOT EXISTS statement for a declared table."""
    columns = ", ".join(column_sql(c, types[c.name]) for c in table.columns)
    partitioned = f" PARTITION BY RANGE ({quote_name(table.partition.column)})" if table.partition else ""
    return f"CREATE TABLE IF NOT EXISTS {quote_table(table.name)} ({columns}){partitioned}"


def add_column_sql(table: TableDecl, column: ColumnDecl, column_type: ColumnType) -> str:
    """The ALTER TABLE ... ADD COLUMN IF NOT EXISTS statement for a declared column."""
    return (f"ALTER TABLE {quote_table(table.name)} ADD COLUMN IF NOT EXISTS "
            f"{column_sql(column, column_type)}")


def create_index_sql(table: TableDecl, column: ColumnDecl) -> str:
    """The CREATE [UNIQUE] INDEX IF NOT EXISTS statement for an `indexed` or `unique` column."""
    kind, suffix = ("UNIQUE INDEX", "key") if column.unique else ("INDEX", "idx")
    columns = unique_key(table) if column.unique else (column.name,)
    return (
        f"CREATE {kind} IF NOT EXISTS {quote_name(index_name(table.name, column.name, suffix))} "
        f"ON {quote_table(table.name)} ({', '.join(map(quote_name, columns))})"
    )


def unique_key(table: TableDecl) -> tuple[str, ...]:
    """The columns that identify an event of a declared table: its unique column, and on a
    partitioned table the partition column too (PostgreSQL's unique indexes there must hold it)."""
    key = tuple(c.name for c in table.columns if c.unique)
    if key and table.partition is not None and table.partition.column not in key:
        key += (table.partition.column,)
    return key


def missing_columns(declared: TableDecl, catalog: list[CatalogColumn]) -> list[ColumnDecl]:
    """The declared columns the existing table lacks."""
    existing = {column.name for column in catalog}
    return [column for column in declared.columns if column.name not in existing]


def declared_mismatches(declared: TableDecl, types: Mapping[str, ColumnType],
                        catalog: list[CatalogColumn]) -> list[str]:
    """What differs between a declared table and the existing one, beyond columns it lacks (see
    missing_columns); empty when they fit."""
    existing = {column.name: column for column in catalog}
    problems = []
    for column in declared.columns:
        ddl = types[column.name].ddl
        found = existing.get(column.name)
        if found is None:
            continue
        if found.sql_type != ddl:
            problems.append(f"column {column.name!r} is declared {ddl} but is {found.sql_type}")
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
