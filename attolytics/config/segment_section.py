"""An app's `segment` section (the schema of its call tables, and the typed tables its track events
fill), and the call tables it declares, in Segment's warehouse layout."""

import re
from dataclasses import replace

from attolytics.config.model import App, ColumnDecl, SegmentSettings, TableDecl
from attolytics.config.yaml_tree import Node, describe

# Each call type, and the table its messages go to in the app's schema.
CALL_TABLES = {"track": "tracks", "identify": "identifies", "page": "pages", "screen": "screens",
               "group": "groups", "alias": "aliases"}
# The columns of every call table, filled from the message (received_at: the service's clock).
COMMON_COLUMNS = (
    ColumnDecl("id", "text", unique=True),
    ColumnDecl("anonymous_id", "text"),
    ColumnDecl("user_id", "text"),
    ColumnDecl("received_at", "timestamptz", source="received_at"),
    ColumnDecl("sent_at", "timestamptz"),
    ColumnDecl("original_timestamp", "timestamptz"),
    ColumnDecl("timestamp", "timestamptz"),
    ColumnDecl("context", "jsonb"),
)
# The columns each call adds.
CALL_COLUMNS = {
    "track": (ColumnDecl("event", "text"), ColumnDecl("event_text", "text"),
              ColumnDecl("properties", "jsonb")),
    "identify": (ColumnDecl("traits", "jsonb"),),
    "page": (ColumnDecl("name", "text"), ColumnDecl("category", "text"), ColumnDecl("properties", "jsonb")),
    "screen": (ColumnDecl("name", "text"), ColumnDecl("category", "text"), ColumnDecl("properties", "jsonb")),
    "group": (ColumnDecl("group_id", "text"), ColumnDecl("traits", "jsonb")),
    "alias": (ColumnDecl("previous_id", "text"),),
}
# The columns a typed table fills from the track itself (its id, times, context, name), by name;
# its other columns come from the properties.
FROM_THE_TRACK = {column.name: column for column in COMMON_COLUMNS + CALL_COLUMNS["track"]
                  if column.name != "properties"}
# The column of a typed table that holds the message's id, so that a resent track is stored once.
TYPED_ID = "id"
# The columns of a typed table filled from when a message was sent or arrived, not from the message.
_ARRIVAL_TIMES = ("timestamp", "received_at", "sent_at")
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*", re.ASCII)


def parse_segment(node: Node) -> SegmentSettings:
    """segment: {schema, events: {event name: table}}."""
    keys = node.mapping({"schema", "events"}, {"schema"})
    schema = keys["schema"].string()
    if not _SCHEMA_NAME.fullmatch(schema) or len(schema.encode()) > 63:
        raise keys["schema"].error(f"{schema!r} is not a PostgreSQL schema name; use letters, digits and _, "
                                   "such as mygame")
    if schema.lower().startswith("pg_"):
        raise keys["schema"].error(f"{schema!r}: PostgreSQL keeps schema names starting with pg_ for itself")
    events: dict[str, str] = {}
    if "events" in keys:
        found = keys["events"]
        if not isinstance(found.value, dict):
            raise found.error(f"expected a mapping from event name to table, got {describe(found.value)}")
        for name, table in found.value.items():
            item = found.child(str(name), table)
            if not isinstance(name, str) or not name:
                raise item.error("an event name must be a non-empty string, as the SDK sends it")
            events[name] = item.string()
    call_tables = {call: f"{schema}.{table}" for call, table in CALL_TABLES.items()}
    return SegmentSettings(schema=schema, events=events, call_tables=call_tables, key=node.path)


def check_segment(apps: dict[str, App], declared_tables: dict[str, TableDecl],
                  skip_duplicates: dict[str, tuple[str, ...]], node: Node) -> None:
    """Each write key belongs to one app with a segment section, and each typed table is one of
    its app's tables that keeps a message once (its `id` is unique, or it skips duplicates on it).
    `node` is the apps section, for messages."""
    owners: dict[bytes, str] = {}
    for app in apps.values():
        settings = app.segment
        if settings is None:
            continue
        for key in app.secret_keys:
            other = owners.setdefault(key, app.app_id)
            if other != app.app_id:
                raise node.error(f"apps {other!r} and {app.app_id!r} have the same key, and both have a segment "
                                 "section: a write key must name one app")
        for name, table in settings.events.items():
            where = Node(node.source, f"{settings.key}.events.{name}", table)
            if table not in app.event_types.values():
                raise where.error(f"{table!r} is not one of app {app.app_id!r}'s tables; list it there too")
            if not _keeps_once(declared_tables.get(table), skip_duplicates.get(table)):
                raise where.error(f"table {table!r} needs a column {TYPED_ID!r} with unique: true (or "
                                  f"skip_duplicates: [{TYPED_ID}]), so that a resent message is stored once")
            partition = declared_tables[table].partition if table in declared_tables else None
            if partition is not None and partition.column in _ARRIVAL_TIMES:
                # A partitioned table's key holds its partition column: one that differs from
                # one sending to the next would let a resent message in again.
                raise where.error(f"table {table!r} is partitioned by {partition.column!r}, which a resent "
                                  f"message fills anew; partition it by original_timestamp or a property")


def _keeps_once(declared: TableDecl | None, skipped_on: tuple[str, ...] | None) -> bool:
    if declared is not None:
        return any(column.name == TYPED_ID and column.unique for column in declared.columns)
    return skipped_on == (TYPED_ID,)


def call_table_decls(apps: dict[str, App], tables: dict[str, TableDecl], node: Node) -> None:
    """Add the call tables of every app's segment schema to `tables` (apps may share a schema);
    a table of that name declared under `tables` is a mistake named with the app's section."""
    declared = set(tables)
    for app in apps.values():
        if app.segment is None:
            continue
        for call, columns in CALL_COLUMNS.items():
            name = app.segment.call_tables[call]
            # public.tracks is the tracks of a configuration that names no schema.
            if name in declared or (app.segment.schema == "public" and CALL_TABLES[call] in declared):
                where = Node(node.source, f"{app.segment.key}.schema", app.segment.schema)
                raise where.error(f"table {name!r} is declared under tables (or is rejected_events); the "
                                  f"segment calls of schema {app.segment.schema!r} need it: choose another schema")
            key = f"{app.segment.key} ({CALL_TABLES[call]})"
            tables[name] = TableDecl(name, tuple(replace(column, key=key) for column in COMMON_COLUMNS + columns))
