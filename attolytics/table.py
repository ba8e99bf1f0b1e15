"""A destination table as the service sees it: which keys an event may carry, and the rows they make."""

from dataclasses import dataclass
from typing import Any

from psycopg2.extensions import AsIs, register_adapter

from attolytics.columns import Converter, Rejected, describe


class EventRejected(ValueError):
    """An event that cannot be stored; names the event's index and the field at fault."""

    def __init__(self, index: int, field: str | None, message: str):
        super().__init__(message)
        self.index = index
        self.field = field
        self.message = message


class _Default:
    """Stands for SQL's DEFAULT in a VALUES list, for a key the event left out."""

    def __repr__(self):
        return "DEFAULT"


DEFAULT = _Default()
register_adapter(_Default, lambda _: AsIs("DEFAULT"))


@dataclass(frozen=True)
class Column:
    """One column a client may fill."""

    name: str
    sql_type: str
    not_null: bool
    has_default: bool
    convert: Converter


def quote_ident(name: str) -> str:
    """Quote an SQL identifier; a dot separates a schema from a table name."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in split_name(name))


def split_name(name: str) -> list[str]:
    """`schema.table` → [schema, table]; a plain name stays one part."""
    return name.split(".", 1) if "." in name else [name]


class Table:
    """Turns events into rows for one table and writes the INSERT that stores them."""

    def __init__(self, name: str, columns: list[Column], fixed: dict[str, str] | None = None):
        self.name = name
        self.columns = {column.name: column for column in columns}
        # Columns a client may not name: present in the table, filled by PostgreSQL.
        self.fixed = dict(fixed or {})
        self._order = list(self.columns)
        prefix = "INSERT INTO {} ({}) VALUES ".format(
            quote_ident(name), ", ".join(quote_ident(c) for c in self._order)
        )
        # psycopg2 reads % as a placeholder, even inside a quoted identifier.
        self._insert_prefix = prefix.replace("%", "%%")
        self._row_template = "(" + ", ".join(["%s"] * len(self._order)) + ")"

    def row(self, event: Any, index: int) -> tuple:
        """Check event number `index` and return its row of parameters, or raise EventRejected."""
        if not isinstance(event, dict):
            raise EventRejected(index, None, f"an event must be a JSON object, got {describe(event)}")
        for key in event:
            if key not in self.columns:
                if key in self.fixed:
                    raise EventRejected(index, key, self.fixed[key])
                raise EventRejected(index, key, f"table {self.name!r} has no column {key!r}")
        values = []
        for name in self._order:
            column = self.columns[name]
            value = event.get(name)
            if value is None:
                if name not in event and column.has_default:
                    values.append(DEFAULT)
                elif column.not_null:
                    what = "missing" if name not in event else "null"
                    raise EventRejected(index, name, f"is required ({column.sql_type} NOT NULL), but {what}")
                else:
                    values.append(None)
                continue
            try:
                values.append(column.convert(value))
            except Rejected as e:
                raise EventRejected(index, name, str(e)) from None
        return tuple(values)

    def insert_statement(self, rows: list[tuple]) -> tuple[str, list]:
        """One multi-row INSERT for `rows`, with its flattened parameters."""
        sql = self._insert_prefix + ", ".join([self._row_template] * len(rows))
        params = [value for row in rows for value in row]
        return sql, params
