"""SQL names as Attolytics spells them: quoted identifiers, and the names it gives indexes."""

import hashlib

_MAX_IDENTIFIER_BYTES = 63


def quote_name(name: str) -> str:
    """Quote one SQL identifier (a column, an index)."""
    return '"' + name.replace('"', '""') + '"'


def quote_table(name: str) -> str:
    """Quote a table name; a dot separates a schema from the table (`analytics.events`)."""
    return ".".join(quote_name(part) for part in name.split(".", 1))


def schema_of(table: str) -> str | None:
    """The schema a table name names (`analytics` of `analytics.events`), or None."""
    return table.split(".", 1)[0] if "." in table else None


def quote_in_schema(schema: str | None, name: str) -> str:
    """Quote the name of a relation (a partition, an index) in `schema`, or unqualified."""
    return f"{quote_name(schema)}.{quote_name(name)}" if schema else quote_name(name)


def index_name(table: str, column: str, suffix: str = "idx") -> str:
    """A stable index name for an `indexed` column (suffix "idx") or a `unique` one ("key"),
    within PostgreSQL's 63-byte limit.

    An index lives in its table's schema, so the schema is not part of the name.
    """
    name = f"{table.split('.', 1)[-1]}_{column}_{suffix}"
    if len(name.encode()) <= _MAX_IDENTIFIER_BYTES:
        return name
    # An `indexed` column's name is what it always was; a `unique` one's differs from it.
    hashed = f"{table}\0{column}" + ("" if suffix == "idx" else f"\0{suffix}")
    digest = hashlib.sha1(hashed.encode()).hexdigest()[:8]
    head = name.encode()[: _MAX_IDENTIFIER_BYTES - 9].decode(errors="ignore")
    return f"{head}_{digest}"
