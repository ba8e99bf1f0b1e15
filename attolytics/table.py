"""A destination table as the service sees it: which keys an event may carry, and the rows they make."""

from dataclasses import dataclass
from typing import Any, Mapping

from psycopg2.extensions import AsIs, register_adapter

from attolytics.columns import Converter, Rejected, describe


class EventRejected(ValueError):
    """An event that cannot be stored; names the event's index and the field at fault."""

    def __init__(self, index: int, field: str | None, message: str, status: int = 400):
        super().__init__(message)
        self.index = index
        self.field = field
        self.message = message
        self.status = status


class _Default:
    """Stands for SQL's DEFAULT in a VALUES list, for a key the event left out."""

    def __repr__(self):
        return "DEFAULT"


DEFAULT = _Default()
register_adapter(_Default, lambda _: AsIs("DEFAULT"))


@dataclass(frozen=True)
class Column:
    """One column Attolytics fills, from the event body or from a request header."""

    name: str
    sql_type: str
    not_null: bool
    has_default: bool
    convert: Converter
    # Filled from this HTTP request header (compared case-insensitively) instead of the body.
    header: str | None = None


def quote_name(name: str) -> str:
    """Quote one SQL identifier (a column, an index)."""
    return '"' + name.replace('"', '""') + '"'


def quote_table(name: str) -> str:
    """Quote a table name; a dot separates a schema from the table (`analytics.events`)."""
    return ".".join(quote_name(part) for part in name.split(".", 1))


class Table:
    """Turns events into rows for one table and writes the INSERT that stores them."""

    def __init__(self, name: str, columns: list[Column], fixed: dict[str, str] | None = None):
        self.name = name
        self.columns = {column.name: column for column in columns}
        # Columns a client may not name, each with the reason: filled by PostgreSQL, or not declared.
        self.fixed = dict(fixed or {})
        self._columns = list(columns)
        self._body_columns = {c.name for c in columns if c.header is None}
        self.uses_headers = any(c.header is not None for c in columns)
        prefix = "INSERT INTO {} ({}) VALUES ".format(
            quote_table(name), ", ".join(quote_name(c.name) for c in self._columns)
        )
        # psycopg2 reads % as a placeholder, even inside a quoted identifier.
        self._insert_prefix = prefix.replace("%", "%%")
        self._row_template = "(" + ", ".join(["%s"] * len(self._columns)) + ")"

    def row(self, event: Any, index: int, headers: Mapping[str, str] | None = None,
            ignore: str | None = None) -> tuple:
        """Check event number `index` and return its row of parameters, or raise EventRejected.

        `headers` maps lower-case request header names to values, for header columns; the key
        `ignore` (the `_t` of the multi-table route) is not a column.
        """
        if not isinstance(event, dict):
            raise EventRejected(index, None, f"an event must be a JSON object, got {describe(event)}")
        for key in event:
            if key not in self._body_columns and key != ignore:
                raise EventRejected(index, key, self._refusal(key))
        values = []
        for column in self._columns:
            if column.header is None:
                present = column.name in event
                value = event.get(column.name)
            else:
                value = (headers or {}).get(column.header.lower())
                present = value is not None
            if value is None:
                if not present and column.has_default:
                    values.append(DEFAULT)
                elif column.not_null:
                    raise EventRejected(index, column.name, self._missing(column, present))
                else:
                    values.append(None)
                continue
            try:
                values.append(column.convert(value))
            except Rejected as e:
                source = f" (from the {column.header} header)" if column.header else ""
                raise EventRejected(index, column.name, f"{e}{source}") from None
        return tuple(values)

    def _refusal(self, key: str) -> str:
        if key in self.fixed:
            return self.fixed[key]
        column = self.columns.get(key)
        if column is not None and column.header is not None:
            return f"column {key!r} is filled from the {column.header} request header, not the event"
        return f"table {self.name!r} has no column {key!r}"

    @staticmethod
    def _missing(column: Column, present: bool) -> str:
        if column.header is not None:
            return f"is required and filled from the {column.header} request header, which is missing"
        return f"is required ({column.sql_type} NOT NULL), but {'null' if present else 'missing'}"

    def insert_statement(self, rows: list[tuple]) -> tuple[str, list]:
        """One multi-row INSERT for `rows`, with its flattened parameters."""
        sql = self._insert_prefix + ", ".join([self._row_template] * len(rows))
        params = [value for row in rows for value in row]
        return sql, params
