"""What the declared tables of a configuration mean: the column type each column's name stands for."""

from typing import Mapping

from attolytics.config import ColumnDecl, Config, ConfigError
from attolytics.config.segment_section import FROM_THE_TRACK
from attolytics.storage.column_types import ColumnType, Inet, Text, Timestamp, Uuid, for_declaration

# table name -> column name -> type
DeclaredTypes = Mapping[str, Mapping[str, ColumnType]]

_KNOWN = ("bool, i32, i64, f32, f64, string, timestamp, or a PostgreSQL type such as text, "
          "varchar(n), numeric(p,s), jsonb, uuid, date")


def declared_types(config: Config) -> DeclaredTypes:
    """The type of every declared column; a ConfigError names the file and key of a type nobody
    knows, or of a header that would fill a column that is not a string."""
    types = {
        table.name: {column.name: _column_type(config, column) for column in table.columns}
        for table in config.tables.values()
    }
    for table in config.tables.values():
        for column in table.columns:
            if column.source in ("app_id", "event_type"):
                _check_fits_the_ids(config, table.name, column, types[table.name][column.name])
        partition = table.partition
        _check_typed_from_messages(config, table, types[table.name])
        if partition is not None and not isinstance(types[table.name][partition.column], Timestamp):
            raise ConfigError(f"{config.path}: {partition.key}.column: a table is partitioned by a "
                              f"timestamp column, and {partition.column!r} is "
                              f"{types[table.name][partition.column].ddl}")
    return types


def _check_typed_from_messages(config: Config, table, types: Mapping[str, ColumnType]) -> None:
    """A typed table of Segment's tracks takes the message's own values (its id, times, context)
    in the columns named like them: each such column holds what the calls' tables hold, so that
    no message is refused for the table's choice of type."""
    if not any(app.segment is not None and table.name in app.segment.events.values() for app in config.apps.values()):
        return
    for column in table.columns:
        common = FROM_THE_TRACK.get(column.name)
        if common is None or column.source is not None or column.header is not None:
            continue
        wanted, found = for_declaration(common.type_name), types[column.name]
        fits = type(found) is type(wanted) and (not isinstance(found, Timestamp) or (
            found.with_zone and found.precision in (None, 6)))
        if not fits:
            raise ConfigError(f"{config.path}: {column.key}.type: table {table.name!r} takes the Segment "
                              f"message's {column.name} here, which needs {wanted.ddl}, not {found.ddl}")


def _column_type(config: Config, column: ColumnDecl) -> ColumnType:
    column_type = for_declaration(column.type_name)
    if column_type is None:
        raise ConfigError(f"{config.path}: {column.key}.type: unknown column type "
                          f"{column.type_name!r}; expected {_KNOWN}")
    if column.header is not None and not isinstance(column_type, Text):
        raise ConfigError(f"{config.path}: {column.key}.header: a header fills only string columns, "
                          f"not {column_type.ddl}")
    if column.source == "received_at" and not isinstance(column_type, Timestamp):
        raise ConfigError(f"{config.path}: {column.key}.source: received_at fills only a timestamp "
                          f"column, not {column_type.ddl}")
    if column.source == "client_ip" and not _holds_an_address(column_type):
        raise ConfigError(f"{config.path}: {column.key}.source: client_ip fills only an inet, text or "
                          f"varchar column of at least {_LONGEST_ADDRESS} characters, not {column_type.ddl}")
    return column_type


def _check_fits_the_ids(config: Config, table_name: str, column: ColumnDecl, column_type: ColumnType) -> None:
    """A column filled with the app's id or the event type holds text, long enough for every id
    that can fill it (char(n) is refused: it would pad them)."""
    apps = [app for app in config.apps.values() if table_name in app.event_types.values()]
    if column.source == "app_id":
        ids = {app.app_id for app in apps}
    else:
        ids = {type_id for app in apps for type_id, table in app.event_types.items() if table == table_name}
    longest = max(ids, key=len, default="")
    if (not isinstance(column_type, Text) or column_type.typname == "bpchar"
            or (column_type.max_length is not None and len(longest) > column_type.max_length)):
        raise ConfigError(f"{config.path}: {column.key}.source: {column.source} fills only a text or "
                          f"varchar column long enough for every id that fills it ({longest!r}), "
                          f"not {column_type.ddl}")


# The longest address text client_ip can give: an IPv6 address with an IPv4 part.
_LONGEST_ADDRESS = len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255")


def _holds_an_address(column_type: ColumnType) -> bool:
    if isinstance(column_type, Inet):
        return True
    return (isinstance(column_type, Text) and column_type.typname != "bpchar"
            and (column_type.max_length is None or column_type.max_length >= _LONGEST_ADDRESS))


def uuid_ids(config: Config, types: DeclaredTypes) -> dict[str, str]:
    """Table name -> its `unique` column, for the declared tables whose id is a uuid: a client
    can make such an id itself."""
    return {
        table.name: column.name
        for table in config.tables.values()
        for column in table.columns
        if column.unique and isinstance(types[table.name][column.name], Uuid)
    }


def event_ids(config: Config, types: DeclaredTypes) -> dict[str, dict[str, str]]:
    """App id -> event type -> the uuid `unique` column of its table: the browser client fills
    that column with a new id for each event it sends, so that a retry stores it once."""
    ids = uuid_ids(config, types)
    found = {}
    for app in config.apps.values():
        columns = {type_id: ids[table] for type_id, table in app.event_types.items() if table in ids}
        if columns:
            found[app.app_id] = columns
    return found
