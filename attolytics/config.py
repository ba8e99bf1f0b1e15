"""Load the YAML configuration file into frozen dataclasses; both dialects end up the same."""

import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit

import yaml

from attolytics.columns import ddl_type_for

DEFAULT_LISTEN = "tcp:8000:interface=127.0.0.1"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_EMBEDDED_PATH = "attolytics-data"


class ConfigError(Exception):
    """A mistake in the configuration file; the message names the file and the key."""


@dataclass(frozen=True)
class ColumnDecl:
    """A column declared under `tables:`."""

    name: str
    # The PostgreSQL type as format_type() spells it; also valid in DDL.
    ddl_type: str
    required: bool = False
    indexed: bool = False
    # The HTTP request header that fills this column instead of the event body.
    header: str | None = None


@dataclass(frozen=True)
class TableDecl:
    """A table declared under `tables:`, created at start-up when missing."""

    name: str
    columns: tuple[ColumnDecl, ...]


@dataclass(frozen=True)
class App:
    """One client application: its key and the event types it may send."""

    app_id: str
    # Every key the app may send; more than one while a key is being rotated.
    secret_keys: tuple[bytes, ...]
    # event type id (the URL segment, or an event's _t) -> table name
    event_types: Mapping[str, str]
    # Origins a browser may post from (CORS); empty means any origin ("*").
    allowed_origins: frozenset[str] = frozenset()

    @property
    def secret_key(self) -> bytes:
        """The app's first key."""
        return self.secret_keys[0]

    @property
    def allows_any_origin(self) -> bool:
        """True when any web page may post to this app."""
        return not self.allowed_origins


@dataclass(frozen=True)
class Database:
    """Where the data goes: a libpq URL, or the embedded server's data directory."""

    url: str | None = None
    embedded_path: str | None = None


@dataclass(frozen=True)
class WriterSettings:
    """How rows are gathered and written."""

    connections: int = 2
    max_queued_rows: int = 100_000
    max_batch_rows: int = 5000
    max_delay_ms: int = 0
    flush_timeout: float = 10.0


@dataclass(frozen=True)
class Config:
    """The whole configuration, as the service uses it."""

    path: str
    database: Database
    apps: Mapping[str, App]
    tables: Mapping[str, TableDecl] = field(default_factory=dict)
    listen: str = DEFAULT_LISTEN
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    writer: WriterSettings = WriterSettings()
    # Seconds a client has to send a whole request; seconds a stop may take.
    request_timeout: float = 30.0
    shutdown_timeout: float = 10.0

    def table_names(self) -> list[str]:
        """Every table the service writes to or declares, each once, in a stable order."""
        names = dict.fromkeys(self.tables)
        for app in self.apps.values():
            names.update(dict.fromkeys(app.event_types.values()))
        return list(names)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a mapping with the same key twice instead of keeping the last."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


class _Node:
    """A value in the parsed YAML with the key path that leads to it, for error messages."""

    def __init__(self, source: str, path: str, value: Any):
        self.source = source
        self.path = path
        self.value = value

    def error(self, message: str) -> ConfigError:
        where = f"{self.source}: {self.path}" if self.path else self.source
        return ConfigError(f"{where}: {message}")

    def child(self, key, value) -> "_Node":
        if isinstance(key, int):
            path = f"{self.path}[{key}]"
        else:
            path = f"{self.path}.{key}" if self.path else str(key)
        return _Node(self.source, path, value)

    def mapping(self, allowed: set[str], required: set[str] = frozenset()) -> dict[str, "_Node"]:
        if not isinstance(self.value, dict):
            raise self.error(f"expected a mapping, got {_describe(self.value)}")
        children = {}
        for key, value in self.value.items():
            if not isinstance(key, str):
                raise self.error(f"keys must be strings, got {key!r}")
            if key not in allowed:
                raise self.child(key, value).error(
                    f"unknown key; expected one of {', '.join(sorted(allowed))}"
                )
            children[key] = self.child(key, value)
        for key in sorted(required - children.keys()):
            raise self.child(key, None).error("missing")
        return children

    def items(self) -> list["_Node"]:
        if not isinstance(self.value, list):
            raise self.error(f"expected a list, got {_describe(self.value)}")
        return [self.child(i, v) for i, v in enumerate(self.value)]

    def string(self) -> str:
        if not isinstance(self.value, str) or not self.value:
            raise self.error(f"expected a non-empty string, got {_describe(self.value)}")
        return self.value

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.error(f"expected true or false, got {_describe(self.value)}")
        return self.value

    def seconds(self) -> float:
        if type(self.value) not in (int, float) or not 0 < self.value <= 3600:
            raise self.error(f"expected seconds, more than 0 and at most 3600, got {_describe(self.value)}")
        return float(self.value)

    def positive_int(self) -> int:
        if type(self.value) is not int or self.value <= 0:
            raise self.error(f"expected a positive integer, got {_describe(self.value)}")
        return self.value


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


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
    """Parse configuration YAML `text`; `source` names it in error messages."""
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        if problem.startswith("duplicate key"):
            raise ConfigError(f"{source}: line {mark.line + 1}: {problem}") from None
        raise ConfigError(f"{source}: YAML syntax error{where}: {problem}") from None
    root = _Node(source, "", document)
    keys = root.mapping(
        {"listen", "database", "database_url", "apps", "tables", "max_body_bytes", "writer",
         "request_timeout", "shutdown_timeout"},
        {"apps"},
    )
    tables = _tables(keys["tables"]) if "tables" in keys else {}
    if "database_url" in keys:
        if "database" in keys:
            raise keys["database_url"].error("give either database_url or a database section, not both")
        database = Database(url=keys["database_url"].string())
    else:
        database = _database(keys.get("database"))
    config = Config(
        path=source,
        database=database,
        apps=_apps(keys["apps"]),
        tables=tables,
        listen=keys["listen"].string() if "listen" in keys else DEFAULT_LISTEN,
        max_body_bytes=(
            keys["max_body_bytes"].positive_int()
            if "max_body_bytes" in keys
            else DEFAULT_MAX_BODY_BYTES
        ),
        writer=_writer(keys["writer"]) if "writer" in keys else WriterSettings(),
        request_timeout=keys["request_timeout"].seconds() if "request_timeout" in keys else 30.0,
        shutdown_timeout=keys["shutdown_timeout"].seconds() if "shutdown_timeout" in keys else 10.0,
    )
    return config


def _writer(node: _Node) -> WriterSettings:
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
            raise keys["max_delay_ms"].error(f"expected milliseconds from 0 to 1000, got {_describe(delay)}")
        settings["max_delay_ms"] = delay
    return WriterSettings(**settings)


def _database(node: _Node | None) -> Database:
    if node is None or node.value is None:
        return Database(embedded_path=os.path.abspath(DEFAULT_EMBEDDED_PATH))
    keys = node.mapping({"url", "embedded", "host", "port", "user", "password", "database"})
    chosen = [k for k in ("url", "embedded") if k in keys]
    seed_fields = [k for k in ("host", "port", "user", "password", "database") if k in keys]
    if len(chosen) + bool(seed_fields) > 1:
        raise node.error("give only one of url, embedded, or host/port/user/password/database")
    if "url" in keys:
        return Database(url=keys["url"].string())
    if "embedded" in keys:
        return Database(embedded_path=os.path.abspath(keys["embedded"].string()))
    if not seed_fields:
        return Database(embedded_path=os.path.abspath(DEFAULT_EMBEDDED_PATH))
    return Database(url=_url_from_fields(keys))


def _url_from_fields(keys: dict[str, _Node]) -> str:
    """Build a libpq connection string from the seed's host/port/user/password/database keys."""
    from psycopg2.extensions import make_dsn

    params = {}
    for key, libpq_name in (
        ("host", "host"),
        ("user", "user"),
        ("password", "password"),
        ("database", "dbname"),
    ):
        if key in keys:
            value = keys[key].value
            if not isinstance(value, str):
                raise keys[key].error(f"expected a string, got {_describe(value)}")
            params[libpq_name] = value
    if "port" in keys:
        port = keys["port"].positive_int()
        if port > 65535:
            raise keys["port"].error(f"expected a port number, got {port}")
        params["port"] = str(port)
    return make_dsn(**params)


def _apps(node: _Node) -> dict[str, App]:
    """Both forms: the seed's list of apps, or the later map from app id to app."""
    by_id: dict[str, App] = {}
    if isinstance(node.value, list):
        for item in node.items():
            app = _seed_app(item)
            if app.app_id in by_id:
                raise item.error(f"duplicate app id {app.app_id!r}")
            by_id[app.app_id] = app
    elif isinstance(node.value, dict):
        # The YAML loader already refuses a repeated key, so ids are unique here.
        for key, value in node.value.items():
            app_id = str(key) if type(key) is int else key
            by_id[app_id] = _map_app(node.child(str(key), value), app_id)
    else:
        raise node.error(f"expected a list or a mapping of apps, got {_describe(node.value)}")
    if not by_id:
        raise node.error("no apps configured; add at least one")
    return by_id


def _seed_app(node: _Node) -> App:
    keys = node.mapping(
        {"app_id", "app_secret_key", "event_types", _ORIGIN_KEY}, {"app_id", "app_secret_key"}
    )
    event_types: dict[str, str] = {}
    for item in keys["event_types"].items() if "event_types" in keys else []:
        fields = item.mapping({"event_type_id", "table"}, {"event_type_id"})
        type_id = fields["event_type_id"].string()
        if type_id in event_types:
            raise fields["event_type_id"].error(f"duplicate event type {type_id!r}")
        event_types[type_id] = fields["table"].string() if "table" in fields else type_id
    return App(
        app_id=_app_id(keys["app_id"]),
        secret_keys=(_secret(keys["app_secret_key"]),),
        event_types=event_types,
        allowed_origins=_origins(keys.get(_ORIGIN_KEY)),
    )


def _map_app(node: _Node, app_id: Any) -> App:
    if not isinstance(app_id, str) or not app_id:
        raise node.error("an app id must be a non-empty string")
    keys = node.mapping({"secret_key", "secret_keys", "tables", _ORIGIN_KEY})
    if "secret_key" not in keys and "secret_keys" not in keys:
        raise node.child("secret_key", None).error("missing")
    if "secret_key" in keys and "secret_keys" in keys:
        raise node.error("give either secret_key or secret_keys (a list, to rotate keys), not both")
    if "secret_key" in keys:
        secrets = (_secret(keys["secret_key"]),)
    else:
        secrets = tuple(_secret(item) for item in keys["secret_keys"].items())
        if not secrets:
            raise keys["secret_keys"].error("list at least one key")
    tables: dict[str, str] = {}
    for item in keys["tables"].items() if "tables" in keys else []:
        name = item.string()
        if name in tables:
            raise item.error(f"table {name!r} is listed twice")
        tables[name] = name
    return App(
        app_id=app_id,
        secret_keys=secrets,
        event_types=tables,
        allowed_origins=_origins(keys.get(_ORIGIN_KEY)),
    )


_ORIGIN_KEY = "access_control_allow_origin"


def _origins(node: _Node | None) -> frozenset[str]:
    """One origin, a list of origins, or "*" (also the default); "*" becomes the empty set."""
    if node is None:
        return frozenset()
    items = node.items() if isinstance(node.value, list) else [node]
    origins = set()
    for item in items:
        origin = item.string()
        if origin == "*":
            if len(items) > 1:
                raise item.error('"*" allows every origin; it cannot be listed with others')
            return frozenset()
        normal = _browser_origin(origin)
        if normal is None:
            raise item.error(
                f"{origin!r} is not an origin; expected scheme://host[:port], such as https://example.com"
            )
        origins.add(normal)
    return frozenset(origins)


_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#\s@]+", re.ASCII | re.IGNORECASE)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _browser_origin(text: str) -> str | None:
    """An origin spelled as browsers send it (lower case, punycode, no default port), or None."""
    if not _ORIGIN.fullmatch(text):
        return None
    parts = urlsplit(text)
    try:
        host, port = parts.hostname, parts.port
        if not host.isascii():
            host = host.encode("idna").decode("ascii")
    except (ValueError, UnicodeError):  # a port out of range, a host IDNA cannot spell
        return None
    scheme = parts.scheme.lower()
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc += f":{port}"
    return f"{scheme}://{netloc}"


def _app_id(node: _Node) -> str:
    if isinstance(node.value, int) and not isinstance(node.value, bool):
        return str(node.value)
    return node.string()


def _secret(node: _Node) -> bytes:
    value = node.value
    if not isinstance(value, str) or not value.strip():
        raise node.error(
            f"expected a non-empty string, got {_describe(value)} (quote a key that looks like a number)"
        )
    return value.encode("utf-8")


def _tables(node: _Node) -> dict[str, TableDecl]:
    if not isinstance(node.value, dict):
        raise node.error(f"expected a mapping from table name to table, got {_describe(node.value)}")
    tables = {}
    for name, value in node.value.items():
        table_node = node.child(name, value)
        if not isinstance(name, str) or not name:
            raise table_node.error("a table name must be a non-empty string")
        keys = table_node.mapping({"columns"}, {"columns"})
        columns = [_column(item) for item in keys["columns"].items()]
        if not columns:
            raise keys["columns"].error("a table needs at least one column")
        seen = set()
        for column, item in zip(columns, keys["columns"].items()):
            if column.name in seen:
                raise item.error(f"column {column.name!r} is declared twice")
            seen.add(column.name)
        tables[name] = TableDecl(name=name, columns=tuple(columns))
    return tables


def _column(node: _Node) -> ColumnDecl:
    keys = node.mapping({"name", "type", "required", "indexed", "header"}, {"name"})
    type_name = keys["type"].string() if "type" in keys else "string"
    ddl_type = ddl_type_for(type_name)
    if ddl_type is None:
        raise keys["type"].error(
            f"unknown column type {type_name!r}; expected bool, i32, i64, f32, f64, string, "
            "timestamp, or a PostgreSQL type such as text, varchar(n), numeric(p,s), jsonb, uuid, date"
        )
    header = None
    if "header" in keys:
        header = keys["header"].string()
        if not _HEADER_NAME.fullmatch(header):
            raise keys["header"].error(f"{header!r} is not an HTTP header name")
        if not (ddl_type == "text" or ddl_type.startswith("character")):
            raise keys["header"].error(f"a header fills only string columns, not {ddl_type}")
    return ColumnDecl(
        name=keys["name"].string(),
        ddl_type=ddl_type,
        required=keys["required"].boolean() if "required" in keys else False,
        indexed=keys["indexed"].boolean() if "indexed" in keys else False,
        header=header,
    )


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", re.ASCII)
