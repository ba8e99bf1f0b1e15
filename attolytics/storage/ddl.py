"""Declared tables in SQL: the CREATE statements for them, and how an existing table differs."""

from typing import Mapping

from attolytics.config import ColumnDecl, TableDecl
from attolytics.storage.catalog import CatalogColumn
from attolytics.storage.column_types import ColumnType
from attolytics.storage.identifiers import index_name, quote_name, quote_table


def create_table_sql(table: TableDecl, types: Mapping[str, ColumnType]) -> str:
    """The CREATE TABLE IF NOT EXISTS statement for a declared table."""
    columns = ", ".join(
        f"{quote_name(c.name)} {types[c.name].ddl}{' NOT NULL' if c.required else ''}"
        for c in table.columns
    )
    return f"CREATE TABLE IF NOT EXISTS {quote_table(table.name)} ({columns})"


def create_index_sql(table: TableDecl, column: ColumnDecl) -> str:
    """The CREATE [UNIQUE] INDEX IF NOT EXISTS statement for an `indexed` or `unique` column."""
    kind, suffix = ("UNIQUE INDEX", "key") if column.unique else ("INDEX", "idx")
    return (
        f"CREATE {kind} IF NOT EXISTS {quote_name(index_name(table.name, column.name, suffix))} "
        f"ON {quote_table(table.name)} ({quote_name(column.name)})"
    )


def declared_mismatches(declared: TableDecl, types: Mapping[str, ColumnType],
                        catalog: list[CatalogColumn]) -> list[str]:
    """What differs between a declared table and the existing one; empty when they fit."""
    existing = {column.name: column for column in catalog}
    problems = []
    for column in declared.columns:
        ddl = types[column.name].ddl
        found = existing.get(column.name)
        if found is None:
            problems.append(f"column {column.name!r} ({ddl}) is missing")
        elif found.sql_type != ddl:
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
