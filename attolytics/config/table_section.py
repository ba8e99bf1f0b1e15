"""The declared tables of the configuration: their columns, and the table of refused events."""

import re

from attolytics.config.model import REJECTED_EVENT_COLUMNS, ColumnDecl, PartitionDecl, TableDecl
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
        keys = table_node.mapping({"columns", "partition"}, {"columns"})
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
        partition = _partition(keys["partition"], columns) if "partition" in keys else None
        tables[name] = TableDecl(name=name, columns=tuple(columns), partition=partition)
    return tables


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", re.ASCII)
SOURCES = ("received_at", "client_ip", "app_id", "event_type")
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


INTERVALS = ("day", "week", "month")


def _partition(node: Node, columns: list[ColumnDecl]) -> PartitionDecl:
    """partition: {column, interval, ahead, keep}: the column a required timestamp (or filled
    with received_at; storage checks its type)."""
    keys = node.mapping({"column", "interval", "ahead", "keep"}, {"column", "interval", "ahead", "keep"})
    name = keys["column"].string()
    column = next((c for c in columns if c.name == name), None)
    if column is None:
        raise keys["column"].error(f"the table declares no column {name!r}")
    if not (column.required or column.source == "received_at"):
        raise keys["column"].error(f"column {name!r} must be required (or filled with received_at): "
                                   f"every row needs a partition")
    unique = next((c for c in columns if c.unique and c.name != name), None)
    if unique is not None and column.source == "received_at":
        # The id and the partition column together identify an event on a partitioned table.
        raise keys["column"].error(
            f"a table partitioned by a column filled with received_at cannot tell a resent event by "
            f"its {unique.name!r}: a resent event arrives at another time; partition by a time the "
            f"event carries")
    interval = keys["interval"].string()
    if interval not in INTERVALS:
        raise keys["interval"].error(f"expected one of {', '.join(INTERVALS)}, got {interval!r}")
    ahead = keys["ahead"].value
    if type(ahead) is not int or ahead < 0:
        raise keys["ahead"].error(f"expected a whole number of intervals, 0 or more, got {describe(ahead)}")
    return PartitionDecl(name, interval, ahead, keys["keep"].positive_int(), key=node.path)
