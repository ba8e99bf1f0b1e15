"""A destination table: which keys an event may carry, the row each event makes, and the INSERT
that stores the rows."""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping

import orjson

from attolytics.errors import EventRejected
from attolytics.storage.column_types import ColumnType, Rejected, describe
from attolytics.storage.identifiers import quote_name, quote_table


class _Default:
    """In a row, a key the event left out: the column gets its DEFAULT."""

    def __repr__(self):
        return "DEFAULT"


DEFAULT = _Default()
_MAX_CACHED_STATEMENTS = 64
_MISSING = object()


@dataclass(frozen=True)
class Column:
    """One column Attolytics fills, from the event body or from a request header."""

    name: str
    sql_type: str  # as format_type() spells it, for messages
    type: ColumnType  # what the column accepts from JSON, and the cast from text in INSERTs
    not_null: bool
    has_default: bool
    # Filled from this HTTP request header (compared case-insensitively) instead of the body.
    header: str | None = None


class Table:
    """Turns events into rows for one table and writes the INSERT that stores them."""

    def __init__(self, name: str, columns: list[Column], fixed: dict[str, str] | None = None):
        self.name = name
        self.columns = {column.name: column for column in columns}
        # Columns a client may not name, each with the reason: filled by PostgreSQL, or not declared.
        self.fixed = dict(fixed or {})
        self._columns = list(columns)
        self._body_columns = frozenset(c.name for c in columns if c.header is None)
        self.uses_headers = any(c.header is not None for c in columns)
        # Per column, what row() needs, unpacked once: the hot loop reads no attributes.
        self._plan = [
            (c.name if c.header is None else None, c.header.lower() if c.header else None,
             c.type.convert, c.has_default, c.not_null, c)
            for c in columns
        ]
        # Positions of the columns an event may leave to their DEFAULT.
        self._defaultable = [i for i, c in enumerate(self._columns) if c.has_default]
        self._statements: dict[tuple, str] = {}

    def row(self, event: Any, index: int, headers: Mapping[str, str] | None = None,
            ignore: str | None = None) -> tuple:
        """Check event number `index` and return its row of parameters, or raise EventRejected.

        `headers` maps lower-case request header names to values, for header columns; the key
        `ignore` (the `_t` of the multi-table route) is not a column.
        """
        if type(event) is not dict:
            raise EventRejected(index, None, f"an event must be a JSON object, got {describe(event)}")
        if not self._body_columns.issuperset(event):
            for key in event:
                if key not in self._body_columns and key != ignore:
                    raise EventRejected(index, key, self._refusal(key))
        values = []
        append = values.append
        for name, header, convert, has_default, not_null, column in self._plan:
            if name is not None:
                value = event.get(name, _MISSING)
            else:
                value = headers.get(header, _MISSING) if headers else _MISSING
            if value is None or value is _MISSING:
                if value is _MISSING and has_default:
                    append(DEFAULT)
                elif not_null:
                    raise EventRejected(index, column.name, self._missing(column, value is None))
                else:
                    append(None)
                continue
            try:
                append(convert(value))
            except Rejected as e:
                source = f" (from the {column.header} header)" if header else ""
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

    def insert_statements(self, rows: list[tuple]) -> list[tuple[str, tuple]]:
        """INSERTs for `rows`, each with its one parameter: the rows as a JSON array of arrays.

        PostgreSQL expands the array and casts each value from text with the column type's own
        input function, so thousands of rows cost one quoted parameter, not one per value.
        Rows that leave different columns to their DEFAULT go into different statements.
        """
        if not self._defaultable:
            return [(self._statement(()), (_rows_json(rows),))]
        groups: dict[tuple, list] = {}
        for row in rows:
            defaulted = tuple(i for i in self._defaultable if row[i] is DEFAULT)
            groups.setdefault(defaulted, []).append(row)
        return [(self._statement(d), (_rows_json(group),)) for d, group in groups.items()]

    def _statement(self, defaulted: tuple) -> str:
        statement = self._statements.get(defaulted)
        if statement is None:
            if len(self._statements) >= _MAX_CACHED_STATEMENTS:
                self._statements.clear()  # clients choose which defaults they use: bound it
            present = [(i, c) for i, c in enumerate(self._columns) if i not in defaulted]
            names = ", ".join(quote_name(c.name) for _, c in present)
            values = ", ".join(
                f"(r->>{i})::pg_catalog.{quote_name(c.type.typname)}" for i, c in present
            )
            head = f"INSERT INTO {quote_table(self.name)} ({names}) SELECT {values}"
            # psycopg2 reads % as a placeholder, even inside a quoted identifier.
            statement = head.replace("%", "%%") + " FROM json_array_elements(%s::json) AS r"
            self._statements[defaulted] = statement
        return statement


def _rows_json(rows: list[tuple]) -> str:
    # orjson writes datetimes and dates in ISO 8601 itself, with the offset when there is one.
    return orjson.dumps(rows, default=_json_value).decode()


def _json_value(value):
    """Text for the values orjson cannot write itself; PostgreSQL reads each with its type's input."""
    if isinstance(value, Decimal):
        return str(value)
    if value is DEFAULT:
        return None
    raise TypeError(f"cannot send {type(value).__name__} to PostgreSQL")
