"""The declared tables of the configuration: their columns, and the table of refused events."""

import re

from attolytics.config.model import REJECTED_EVENT_COLUMNS, ColumnDecl, TableDecl
from attolytics.config.yaml_tree import Node, describe


def parse_tables(node: Node) -> dict[str, TableDecl]:
    """The tables section: table name -> TableDecl."""
    if not isinstance(node.value, dict):
        raise node.error(f"expected a mapping from table name to table, got {describe(node.value)}")
    tables = {}
    for name, value in node.value.items():
        table_node = node.child(name, value)
        if not isinstance(name, str) or not name:
            raise table_node.error("a table name must be a non-empty string")
        keys = table_node.mapping({"columns"}, {"columns"})
        items = keys["columns"].items()
        columns = [_column(item) for item in items]
        if not columns:
            raise keys["columns"].error("a table needs at least one column")
        seen = set()
        for column, item in zip(columns, items):
            if column.name in seen:
                raise item.error(f"column {column.name!r} is declared twice")
            seen.add(column.name)
        unique = [item for column, item in zip(columns, items) if column.unique]
        if len(unique) > 1:
            raise unique[1].error("one column of a table may be unique: the event's id")
        tables[name] = TableDecl(name=name, columns=tuple(columns))
    return tables


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", re.ASCII)
SOURCES = ("received_at", "client_ip")
_FLAGS = ("required", "indexed", "unique", "anonymize")


def _column(node: Node) -> ColumnDecl:
    keys = node.mapping({"name", "type", "header", "source", "default", *_FLAGS}, {"name"})
    flags = {flag: keys[flag].boolean() if flag in keys else False for flag in _FLAGS}
    header = source = None
    if "header" in keys:
        header = keys["header"].string()
        if not _HEADER_NAME.fullmatch(header):
            raise keys["header"].error(f"{header!r} is not an HTTP header name")
    if "source" in keys:
        source = keys["source"].string()
        if source not in SOURCES:
            raise keys["source"].error(f"expected one of {', '.join(SOURCES)}, got {source!r}")
        if header is not None:
            raise keys["source"].error("a column is filled from a header or by the service, not both")
    if flags["anonymize"] and source != "client_ip":
        raise keys["anonymize"].error("only a column with source: client_ip can be anonymized")
    if flags["unique"] and (header or source):
        raise keys["unique"].error("an event's id comes from the event, not from a header or the service")
    return ColumnDecl(
        name=keys["name"].string(),
        type_name=keys["type"].string() if "type" in keys else "string",
        header=header,
        source=source,
        default=_literal(keys["default"]) if "default" in keys else None,
        key=node.path,
        **flags,
    )


def _literal(node: Node) -> str:
    """A column default as SQL literal text: a string as it is, a number or a boolean spelled."""
    value = node.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise node.error(f"expected a value of the column's type, such as 0 or 'unknown', got {describe(value)}")


def rejected_events_table(node: Node, tables: dict[str, TableDecl]) -> str:
    """The table that keeps refused events: declared (added to `tables`) with its fixed columns."""
    name = node.string()
    if name in tables:
        raise node.error(f"{name!r} is declared under tables; the table of refused events has columns "
                         f"of its own: name a table that is not declared")
    tables[name] = TableDecl(name=name, columns=tuple(
        ColumnDecl(column, type_name, source=source, key=f"rejected_events ({column})")
        for column, type_name, source in REJECTED_EVENT_COLUMNS))
    return name
