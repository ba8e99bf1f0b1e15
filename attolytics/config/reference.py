"""Every key of the configuration file, with its type, default, forms and one line on what it does."""

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Iterable, Mapping

from attolytics.config.model import (
    DEFAULT_EMBEDDED_ADDRESS,
    DEFAULT_EMBEDDED_PATH,
    DEFAULT_EMBEDDED_PORT,
    DEFAULT_LISTEN,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_EVENTS_PER_REQUEST,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SHUTDOWN_TIMEOUT,
    App,
    ColumnDecl,
    Config,
    WriterSettings,
)

# The two forms of the apps section; a key outside `apps` belongs to both.
LIST, MAP = "list", "map"
BOTH = (LIST, MAP)
# What the default column of a key that must be given says.
REQUIRED = "required"


@dataclass(frozen=True)
class Key:
    """One key of the configuration file, as the reference describes it."""

    # Where the key is: "" (the top level), "database", "apps.*", "tables.*.columns[]", ...
    section: str
    name: str
    type: str
    # The default as the file would spell it, or REQUIRED, or words ("the event type id").
    default: str
    does: str
    forms: tuple[str, ...] = BOTH
    # The Config attribute that reload.RESTART_ONLY names it by, when that is not its own path.
    setting: str | None = None
    # A value the loader takes, the keys beside it that value needs, and those it cannot go with:
    # tests/test_config_reference.py gives the loader each key so, in a configuration whose app
    # writes to a declared table `t` (columns `id`, a unique uuid, and `ts`, a required timestamp).
    example: Any = None
    needs: Mapping[str, Any] = field(default_factory=dict)
    without: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        """The key's full path: database.url, apps.*.rate_limit.burst."""
        return f"{self.section}.{self.name}" if self.section else self.name


def yaml_value(value: Any) -> str:
    """A default as a YAML file writes it: true, 30, tcp:8000:interface=127.0.0.1."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def code(value: Any) -> str:
    """A default as a YAML file writes it, marked as code."""
    return f"`{yaml_value(value)}`"


def default_of(cls: type, name: str) -> str:
    """The default of dataclass `cls`'s field `name`, as a YAML file writes it, marked as code."""
    found = next(f for f in fields(cls) if f.name == name)
    if found.default is MISSING:
        raise ValueError(f"{cls.__name__}.{name} has no default")
    return code(found.default)


_SECONDS = "seconds: above 0, at most 3600"
_POSITIVE = "integer above 0"
_BOOLEAN = "true or false"
_ENDPOINT = "Twisted endpoint description"

TOP_LEVEL = (
    Key("", "listen", _ENDPOINT, code(DEFAULT_LISTEN),
        "Where the service listens: `tcp:8080`, `unix:/run/attolytics/attolytics.sock`, `ssl:...`; "
        "`--listen` (or `--host`/`--port`) wins over it.", example="tcp:8001"),
    Key("", "admin_listen", _ENDPOINT, "none (no admin port)",
        "Where `/metrics` and the live view `/live` are served, and only there (the public port answers 404 "
        "for them); without it `/metrics` is on the public port and there is no live view; "
        "`--admin-listen` wins over it.", example="tcp:8100:interface=127.0.0.1"),
    Key("", "database", "mapping (below)", f"none: the embedded PostgreSQL in `./{DEFAULT_EMBEDDED_PATH}`",
        "Where the events go: a URL, host/port/user/password/database, or the embedded server's directory; "
        "not with `database_url`; `--db-url` wins over both.", example={"url": "postgresql://localhost/db"}),
    Key("", "database_url", "libpq URL", "none", "The same as `database.url`, as one top-level key.",
        setting="database", example="postgresql://attolytics@localhost/attolytics"),
    Key("", "apps", "list (list form) or mapping from app id (map form)", REQUIRED,
        "The apps that may send, each with its keys and the event types or tables it may write.",
        example=[{"app_id": "other", "app_secret_key": "k"}]),
    Key("", "tables", "mapping from table name to table (below)", "none",
        "Tables declared here: created at start-up or reload when missing, checked when present, "
        "declared columns added.", example={"t2": {"columns": [{"name": "x"}]}}),
    Key("", "max_body_bytes", _POSITIVE, code(DEFAULT_MAX_BODY_BYTES),
        "The largest request body, also once gzip or deflate is inflated; larger gets 413.", example=2048),
    Key("", "max_events_per_request", _POSITIVE, code(DEFAULT_MAX_EVENTS_PER_REQUEST),
        "The most events one request may carry; more gets 413 before any is checked.", example=100),
    Key("", "request_timeout", _SECONDS, code(DEFAULT_REQUEST_TIMEOUT),
        "The time a request has to arrive whole after its first line, else 408; an idle connection "
        "is closed after it too.", example=5),
    Key("", "shutdown_timeout", _SECONDS, code(DEFAULT_SHUTDOWN_TIMEOUT),
        "The time a stop (SIGTERM) has to finish requests and commit their rows; what is not committed "
        "by then is answered 503.", example=2.5),
    Key("", "trusted_proxies", "list of IP addresses and networks", "none",
        "The proxies whose `X-Forwarded-For` is believed, for `client_ip` columns and per-client rate "
        "limits.", example=["10.0.0.0/8", "203.0.113.7", "fd00::/8"]),
    Key("", "rejected_events", "table name", "none (refused events are not kept)",
        "A table (created when missing, not one declared under `tables`) that keeps the events of "
        "refused requests.", example="refused"),
    Key("", "workers", _POSITIVE, default_of(Config, "workers"),
        "Processes that serve the listening socket together; `--workers` wins over it.", example=2),
    Key("", "writer", "mapping (below)", "the defaults below", "How rows are gathered into transactions.",
        example={"connections": 3}),
    Key("", "openapi", _BOOLEAN, default_of(App, "openapi"),
        "Whether `/openapi.json` describes the apps that do not say themselves.", example=False),
)

DATABASE = (
    Key("database", "url", "libpq URL", "none",
        "A PostgreSQL server of your own (several hosts with `target_session_attrs=read-write` for "
        "a standby); not with `embedded` or the keys below.", example="postgresql://localhost/db"),
    Key("database", "embedded", "directory", code(DEFAULT_EMBEDDED_PATH),
        "The embedded PostgreSQL's data directory (relative to the working directory), made with "
        "`initdb` when missing.", example="/var/lib/attolytics/pgdata"),
    Key("database", "listen", "true, false, a port, an address, or ADDRESS:PORT",
        "`false` (its unix socket alone)",
        f"The embedded server listens over TCP there too (`true`: {DEFAULT_EMBEDDED_ADDRESS}:"
        f"{DEFAULT_EMBEDDED_PORT}), for Metabase, Grafana or Cube.js.", example="127.0.0.1:5433"),
    Key("database", "host", "string", "libpq's", "Your server's host name or unix socket directory.",
        example="localhost"),
    Key("database", "port", "integer from 1 to 65535", "libpq's (5432)", "Your server's port.", example=5432),
    Key("database", "user", "string", "libpq's", "The role to connect as.", example="attolytics"),
    Key("database", "password", "string", "none", "Its password.", example="secret"),
    Key("database", "database", "string", "libpq's", "The database (libpq's `dbname`).", example="attolytics"),
)

WRITER = (
    Key("writer", "connections", _POSITIVE, default_of(WriterSettings, "connections"),
        "PostgreSQL connections of each process, each with one transaction in flight (one more with "
        "`rejected_events`).", example=3),
    Key("writer", "max_batch_rows", _POSITIVE, default_of(WriterSettings, "max_batch_rows"),
        "The most rows in one transaction (a larger request still goes whole).", example=1000),
    Key("writer", "max_queued_rows", _POSITIVE, default_of(WriterSettings, "max_queued_rows"),
        "Rows accepted and not yet committed, in each process; past it requests get 503.", example=5000),
    Key("writer", "max_delay_ms", "milliseconds from 0 to 1000", default_of(WriterSettings, "max_delay_ms"),
        "How long to wait to gather more rows (0: only while a transaction is in flight).", example=5),
    Key("writer", "flush_timeout", _SECONDS, default_of(WriterSettings, "flush_timeout"),
        "Seconds without an answer from PostgreSQL before a transaction's requests get 503.", example=20),
)

_APP = "apps.*"
APPS = (
    Key(_APP, "app_id", "string (or integer)", REQUIRED, "The app's id: the `<app_id>` of its routes.",
        forms=(LIST,), example="mygame"),
    Key(_APP, "app_secret_key", "string", "required, or `app_secret_keys`",
        "The key the app's requests carry.", forms=(LIST,), example="another-key"),
    Key(_APP, "app_secret_keys", "list of strings", "none",
        "More keys, taken alike: beside `app_secret_key` (added to it) or instead, to rotate keys.",
        forms=(LIST,), example=["old-key", "new-key"]),
    Key(_APP, "event_types", "list of event types (below)", "none",
        "The event types the app may send, each the `<event_type_id>` of a route and `_t` of an event.",
        forms=(LIST,), example=[{"event_type_id": "clicks"}]),
    Key(_APP, "secret_key", "string", "required, or `secret_keys`", "The key the app's requests carry.",
        forms=(MAP,), example="another-key"),
    Key(_APP, "secret_keys", "list of strings", "none",
        "Keys taken alike, instead of `secret_key` (not beside it), to rotate keys.", forms=(MAP,),
        example=["old-key", "new-key"], without=("secret_key",)),
    Key(_APP, "tables", "list of table names", "none",
        "The tables the app may write, each also an event type of the same name.", forms=(MAP,),
        example=["t"]),
    Key(_APP, "access_control_allow_origin", "`\"*\"`, an origin, or a list of origins", '`"*"` (any page)',
        "The web pages that may post (CORS); `[]` lets none, and leaves the app out of `/attolytics.js`.",
        example=["https://mygame.example"]),
    Key(_APP, "rate_limit", "mapping (below)", "none (no limit)", "A token bucket counted in events.",
        example={"events_per_second": 200, "burst": 1000}),
    Key(_APP, "openapi", _BOOLEAN, "the top-level `openapi`", "Whether `/openapi.json` describes the app.",
        example=False),
    Key(_APP, "segment", "mapping (below)", "none (no Segment intake)",
        "Turns on Segment's tracking API (`/v1/...`) for the app, its keys as write keys.",
        example={"schema": "mygame"}),
)

EVENT_TYPES = (
    Key("apps.*.event_types[]", "event_type_id", "string", REQUIRED,
        "The event type's id: the last part of its typed route, and `_t` on the other.", forms=(LIST,),
        example="t"),
    Key("apps.*.event_types[]", "table", "table name (schema-qualified or not)", "the event type id",
        "The table its events go to.", forms=(LIST,), example="analytics.t"),
    Key("apps.*.event_types[]", "skip_duplicates", "list of column names", "none",
        "For a table you made: the columns of its unique index that identify an event; an event already "
        "stored is skipped.", forms=(LIST,), example=["id"], needs={"table": "user_made"}),
)

RATE_LIMIT = (
    Key("apps.*.rate_limit", "events_per_second", "number above 0", REQUIRED, "How fast the bucket fills.",
        example=0.5),
    Key("apps.*.rate_limit", "burst", _POSITIVE, REQUIRED,
        "Events the bucket holds: the most that may come at once, and the largest request (more gets 413).",
        example=10),
    Key("apps.*.rate_limit", "by", "`app` or `client`", code("app"),
        "One bucket for the whole app, or one for each client address.", example="client"),
)

SEGMENT = (
    Key("apps.*.segment", "schema", "PostgreSQL schema name", REQUIRED,
        "The schema of the app's call tables (`tracks`, `identifies`, ...), made when missing.",
        example="analytics"),
    Key("apps.*.segment", "events", "mapping from event name to table", "none",
        "Track events of each name also fill that table of the app's, which needs a unique `id`.",
        example={"Level Completed": "t"}),
)

TABLE = (
    Key("tables.*", "columns", "list of columns (below)", REQUIRED, "The table's columns, at least one.",
        example=[{"name": "x"}]),
    Key("tables.*", "partition", "mapping (below)", "none (one table)",
        "Splits the table by time into partitions, made ahead and dropped when old.",
        example={"column": "ts", "interval": "week", "ahead": 2, "keep": 8}),
)

_COLUMN = "tables.*.columns[]"
COLUMN = (
    Key(_COLUMN, "name", "string", REQUIRED, "The column's name.", example="c"),
    Key(_COLUMN, "type", "column type", f"{default_of(ColumnDecl, 'type_name')} (varchar)",
        "An alias (`bool`, `i32`, `i64`, `f32`, `f64`, `string`, `timestamp`) or a PostgreSQL type name.",
        example="numeric(10,2)"),
    Key(_COLUMN, "required", _BOOLEAN, default_of(ColumnDecl, "required"),
        "NOT NULL: an event without it (and no `default`) is refused.", example=True),
    Key(_COLUMN, "indexed", _BOOLEAN, default_of(ColumnDecl, "indexed"),
        "Creates the index `<table>_<column>_idx` when missing.", example=True),
    Key(_COLUMN, "unique", _BOOLEAN, default_of(ColumnDecl, "unique"),
        "The event's id (one column a table): a unique index, and an event whose id is stored is skipped.",
        example=True),
    Key(_COLUMN, "default", "a value of the column's type", "none",
        "The column's DEFAULT: what an event that leaves the key out gets.", example=7, needs={"type": "i32"}),
    Key(_COLUMN, "header", "HTTP header name", "none",
        "Fills the column from that request header, never from the event.", example="User-Agent"),
    Key(_COLUMN, "source", "`received_at`, `client_ip`, `app_id` or `event_type`", "none",
        "Filled by the service: when the request arrived, the client's address, the app or the event type.",
        example="received_at", needs={"type": "timestamptz"}),
    Key(_COLUMN, "anonymize", _BOOLEAN, default_of(ColumnDecl, "anonymize"),
        "With `source: client_ip`: keeps only the network (IPv4's last octet, IPv6's last 80 bits zeroed).",
        example=True, needs={"type": "inet", "source": "client_ip"}),
)

PARTITION = (
    Key("tables.*.partition", "column", "column name", REQUIRED,
        "A required timestamp column of the table, or one with `source: received_at`.", example="ts"),
    Key("tables.*.partition", "interval", "`day`, `week` or `month`", REQUIRED,
        "Each partition's span, in UTC (weeks from Monday).", example="month"),
    Key("tables.*.partition", "ahead", "integer, 0 or more", REQUIRED,
        "Intervals after the current one whose partitions are made in advance.", example=0),
    Key("tables.*.partition", "keep", _POSITIVE, REQUIRED,
        "Intervals of data kept, the current one included; older partitions are dropped, rows and all.",
        example=12),
)

# Each section: its path, its title, and its keys, in the order the reference shows them.
SECTIONS = (
    ("", "The top level", TOP_LEVEL),
    ("database", "`database`", DATABASE),
    ("writer", "`writer`", WRITER),
    (_APP, "An app (`apps[]` in the list form, `apps.<app_id>` in the map form)", APPS),
    ("apps.*.event_types[]", "An event type (`apps[].event_types[]`, list form)", EVENT_TYPES),
    ("apps.*.rate_limit", "An app's `rate_limit`", RATE_LIMIT),
    ("apps.*.segment", "An app's `segment`", SEGMENT),
    ("tables.*", "A declared table (`tables.<name>`)", TABLE),
    (_COLUMN, "A column (`tables.<name>.columns[]`)", COLUMN),
    ("tables.*.partition", "A table's `partition`", PARTITION),
)

KEYS = tuple(key for _, _, keys in SECTIONS for key in keys)


def restart_only(key: Key, restart_keys: Iterable[str]) -> str | None:
    """Whether a reload applies `key`: "restart" when only a restart does, "partly" when some key
    below it needs one, else None. `restart_keys` are reload.RESTART_ONLY's names."""
    names = set(restart_keys)
    path = key.setting or key.path
    if any(path == name or path.startswith(name + ".") for name in names):
        return "restart"
    if any(name.startswith(path + ".") for name in names):
        return "partly"
    return None


def _forms(key: Key) -> str:
    if not key.section.startswith("apps"):
        return "both"
    return "both" if set(key.forms) == set(BOTH) else f"{key.forms[0]} form"


def _applied(key: Key, restart_keys: Iterable[str]) -> str:
    found = restart_only(key, restart_keys)
    if found == "restart":
        return "restart"
    if found == "partly":
        below = sorted(name for name in restart_keys if name.startswith(key.path + "."))
        return "reload, but " + ", ".join(f"`{name}`" for name in below) + ": restart"
    return "reload"


def render_markdown(restart_keys: Iterable[str]) -> str:
    """The reference as a Markdown page (MyST): a definition list a section, one entry a key;
    `restart_keys` as in restart_only."""
    restart_keys = sorted(restart_keys)
    lines = ["# Configuration reference", "",
             "Every key the configuration file takes, generated from `attolytics/config/reference.py` "
             "when the site is built; `tests/test_config_reference.py` holds it to the loader. Each key "
             "says its type; its default; the forms of `apps` it belongs to (*both*, or the list or map "
             "form only); whether a reload (SIGHUP) applies a change of it or only a restart does; and "
             "what it does. [Configuration](../configuration.md) explains the file with examples, and "
             "the command line.", ""]
    for _, title, keys in SECTIONS:
        lines += [f"## {title}", ""]
        for key in keys:
            lines += [f"`{key.path}`",
                      f": *{key.type}*; default: {key.default}; forms: {_forms(key)}; "
                      f"applied by: **{_applied(key, restart_keys)}**.", "",
                      f"  {key.does}", ""]
    return "\n".join(lines)
