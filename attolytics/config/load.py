"""Read the configuration file: the top-level keys, the database, the writer and the declared tables."""

import ipaddress
import os
import re

from attolytics.config.apps import parse_apps
from attolytics.config.model import (
    DEFAULT_EMBEDDED_PATH,
    DEFAULT_LISTEN,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SHUTDOWN_TIMEOUT,
    REJECTED_EVENT_COLUMNS,
    ColumnDecl,
    Config,
    ConfigError,
    DatabaseLocation,
    TableDecl,
    WriterSettings,
)
from attolytics.config.yaml_tree import Node, describe, read_yaml

_TOP_LEVEL_KEYS = {"listen", "database", "database_url", "apps", "tables", "max_body_bytes", "writer",
                   "request_timeout", "shutdown_timeout", "trusted_proxies", "rejected_events"}


def load_config(path: str) -> Config:
    """Read and check the configuration file at `path`; raise ConfigError naming any mistake."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the configuration file: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the configuration file is not UTF-8 text") from None
    return parse_config(text, path)


def parse_config(text: str, source: str) -> Config:
    """Parse configuration YAML `text`; `source` names it in error messages.

    Column types are kept as written: storage.declarations says what they mean.
    """
    keys = read_yaml(text, source).mapping(_TOP_LEVEL_KEYS, {"apps"})
    tables = _tables(keys["tables"]) if "tables" in keys else {}
    rejected = _rejected_events(keys["rejected_events"], tables) if "rejected_events" in keys else None
    if "database_url" in keys:
        if "database" in keys:
            raise keys["database_url"].error("give either database_url or a database section, not both")
        database = DatabaseLocation(url=keys["database_url"].string())
    else:
        database = _database(keys.get("database"))
    apps, skip_duplicates = parse_apps(keys["apps"], tables)
    if rejected is not None:
        for app in apps.values():
            if rejected in app.event_types.values():
                raise keys["rejected_events"].error(
                    f"app {app.app_id!r} writes its events to {rejected!r}; refused events need a table of their own")
    return Config(
        path=source,
        database=database,
        apps=apps,
        tables=tables,
        skip_duplicates=skip_duplicates,
        trusted_proxies=_networks(keys["trusted_proxies"]) if "trusted_proxies" in keys else (),
        rejected_events=rejected,
        listen=keys["listen"].string() if "listen" in keys else DEFAULT_LISTEN,
        max_body_bytes=(
            keys["max_body_bytes"].positive_int() if "max_body_bytes" in keys else DEFAULT_MAX_BODY_BYTES
        ),
        writer=_writer(keys["writer"]) if "writer" in keys else WriterSettings(),
        request_timeout=(
            keys["request_timeout"].seconds() if "request_timeout" in keys else DEFAULT_REQUEST_TIMEOUT
        ),
        shutdown_timeout=(
            keys["shutdown_timeout"].seconds() if "shutdown_timeout" in keys else DEFAULT_SHUTDOWN_TIMEOUT
        ),
    )


def _rejected_events(node: Node, tables: dict[str, TableDecl]) -> str:
    """The table that keeps refused events: declared (added to `tables`) with its fixed columns."""
    name = node.string()
    if name in tables:
        raise node.error(f"{name!r} is declared under tables; the table of refused events has columns "
                         f"of its own: name a table that is not declared")
    tables[name] = TableDecl(name=name, columns=tuple(
        ColumnDecl(column, type_name, source=source, key=f"rejected_events ({column})")
        for column, type_name, source in REJECTED_EVENT_COLUMNS))
    return name


def _networks(node: Node) -> tuple:
    """A list of addresses and networks (203.0.113.7, 10.0.0.0/8, ::1, fd00::/8)."""
    networks = []
    for item in node.items():
        text = item.string()
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise item.error(f"{text!r} is not an IP address or network, such as 10.0.0.0/8") from None
        mapped = network.version == 6 and network.network_address.ipv4_mapped
        if mapped and network.prefixlen >= 96:  # ::ffff:10.0.0.1 is 10.0.0.1, as peers are read
            network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
        networks.append(network)
    return tuple(networks)


def _writer(node: Node) -> WriterSettings:
    keys = node.mapping(
        {"connections", "max_queued_rows", "max_batch_rows", "max_delay_ms", "flush_timeout"}
    )
    settings = {
        name: child.positive_int()
        for name, child in keys.items()
        if name not in ("max_delay_ms", "flush_timeout")
    }
    if "flush_timeout" in keys:
        settings["flush_timeout"] = keys["flush_timeout"].seconds()
    if "max_delay_ms" in keys:
        delay = keys["max_delay_ms"].value
        if type(delay) is not int or not 0 <= delay <= 1000:
            raise keys["max_delay_ms"].error(f"expected milliseconds from 0 to 1000, got {describe(delay)}")
        settings["max_delay_ms"] = delay
    return WriterSettings(**settings)


_LIBPQ_KEYS = {"host": "host", "user": "user", "password": "password", "database": "dbname"}


def _database(node: Node | None) -> DatabaseLocation:
    embedded = DatabaseLocation(embedded_path=os.path.abspath(DEFAULT_EMBEDDED_PATH))
    if node is None or node.value is None:
        return embedded
    keys = node.mapping({"url", "embedded", "port", *_LIBPQ_KEYS})
    chosen = [k for k in ("url", "embedded") if k in keys]
    server_keys = [k for k in ("port", *_LIBPQ_KEYS) if k in keys]
    if len(chosen) + bool(server_keys) > 1:
        raise node.error("give only one of url, embedded, or host/port/user/password/database")
    if "url" in keys:
        return DatabaseLocation(url=keys["url"].string())
    if "embedded" in keys:
        return DatabaseLocation(embedded_path=os.path.abspath(keys["embedded"].string()))
    if not server_keys:
        return embedded
    return DatabaseLocation(url=_url_from_keys(keys))


def _url_from_keys(keys: dict[str, Node]) -> str:
    """A libpq connection string from the host/port/user/password/database keys."""
    from psycopg2.extensions import make_dsn

    params = {}
    for key, libpq_name in _LIBPQ_KEYS.items():
        if key in keys:
            value = keys[key].value
            if not isinstance(value, str):
                raise keys[key].error(f"expected a string, got {describe(value)}")
            params[libpq_name] = value
    if "port" in keys:
        port = keys["port"].positive_int()
        if port > 65535:
            raise keys["port"].error(f"expected a port number, got {port}")
        params["port"] = str(port)
    return make_dsn(**params)


def _tables(node: Node) -> dict[str, TableDecl]:
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
