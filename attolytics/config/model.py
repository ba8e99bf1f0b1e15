"""The configuration as the service uses it: frozen dataclasses, each default written once."""

from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import Mapping

DEFAULT_LISTEN = "tcp:8000:interface=127.0.0.1"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_EMBEDDED_PATH = "attolytics-data"
# Where the embedded server listens over TCP when asked to without an address or a port.
DEFAULT_EMBEDDED_ADDRESS = "127.0.0.1"
DEFAULT_EMBEDDED_PORT = 5432
# Seconds a client has to send a whole request; seconds a stop may take.
DEFAULT_REQUEST_TIMEOUT = 30.0
DEFAULT_SHUTDOWN_TIMEOUT = 10.0
DEFAULT_MAX_EVENTS_PER_REQUEST = 10_000


class ConfigError(Exception):
    """A mistake in the configuration file; the message names the file and the key."""


@dataclass(frozen=True)
class ColumnDecl:
    """A column declared under `tables:`."""

    name: str
    # The type as the configuration names it (i64, varchar(20), ...); storage knows what it means.
    type_name: str = "string"
    required: bool = False
    indexed: bool = False
    # The event's id: a unique index, and an event whose id is stored already is skipped.
    unique: bool = False
    # The HTTP request header that fills this column instead of the event body.
    header: str | None = None
    # Filled by the service instead of the event body: "received_at", "client_ip", "app_id" (the
    # app the request is for) or "event_type" (the route's event type, or the event's `_t`).
    source: str | None = None
    # For source client_ip: keep only the network part of the address.
    anonymize: bool = False
    # The column's DEFAULT, as the text of a literal of its type (checked by PostgreSQL).
    default: str | None = None
    # Where the column is declared (tables.t.columns[0]), for messages about it.
    key: str = field(default="", compare=False)


@dataclass(frozen=True)
class PartitionDecl:
    """How a declared table is split into partitions by time, and how many are kept."""

    column: str
    interval: str  # "day", "week" or "month"
    # Intervals after the current one that have their partitions made in advance.
    ahead: int
    # Intervals of data kept, the current one included: older partitions are dropped.
    keep: int
    # Where it is declared, for messages: "tables.events.partition".
    key: str = field(default="", compare=False)


@dataclass(frozen=True)
class TableDecl:
    """A table declared under `tables:`, created at start-up when missing."""

    name: str
    columns: tuple[ColumnDecl, ...]
    partition: PartitionDecl | None = None


# The columns of the table that keeps refused events: (name, type, filled by the service).
REJECTED_EVENT_COLUMNS = (
    ("received_at", "timestamptz", "received_at"),
    ("app", "text", None),
    ("event_type", "text", None),
    ("status", "integer", None),
    ("error", "text", None),
    ("field", "text", None),
    ("event_index", "integer", None),
    ("at_fault", "boolean", None),
    ("event", "jsonb", None),
)


@dataclass(frozen=True)
class RateLimit:
    """How many events an app takes a second, counted per app or per client address."""

    events_per_second: float
    # Events a bucket holds: what may come at once after a quiet while; also the largest request.
    burst: int
    by: str  # "app": one bucket for the app; "client": one per client address

    def in_words(self) -> str:
        """The rate, as clients are told it: 'at most 5 events a second from each client'."""
        rate = self.events_per_second
        each = " from each client" if self.by == "client" else ""
        return f"at most {rate:g} event{'' if rate == 1 else 's'} a second{each}"


@dataclass(frozen=True)
class SegmentSettings:
    """An app's Segment-compatible intake: the schema of its call tables (tracks, identifies...),
    and the typed tables that track events of a given name are also written to."""

    schema: str
    # The event name as sent ("Level Completed") -> a table of the app's.
    events: Mapping[str, str] = field(default_factory=dict)
    # Each call type (track, identify...) -> its table in the schema (mygame.tracks).
    call_tables: Mapping[str, str] = field(default_factory=dict)
    # Where the section is, for messages: "apps.mygame.segment".
    key: str = field(default="", compare=False)


@dataclass(frozen=True)
class App:
    """One client application: its keys and the event types it may send."""

    app_id: str
    # Every key the app may send; more than one while a key is being rotated.
    secret_keys: tuple[bytes, ...]
    # event type id (the URL segment, or an event's _t) -> table name
    event_types: Mapping[str, str]
    # Origins a browser may post from (CORS); empty means any origin ("*") while `browsers`.
    allowed_origins: frozenset[str] = frozenset()
    rate_limit: RateLimit | None = None
    # False when no web page may post (access_control_allow_origin: []): the app is then left
    # out of the browser client at /attolytics.js.
    browsers: bool = True
    # Whether /openapi.json describes the app (its `openapi` key, else the top-level one).
    openapi: bool = True
    # The Segment-compatible intake (/v1/batch...), when the app has a `segment` section.
    segment: SegmentSettings | None = None

    def tables_written(self) -> list[str]:
        """Every table the app's events go to: its event types' and its Segment call tables."""
        calls = self.segment.call_tables.values() if self.segment is not None else ()
        return list(dict.fromkeys([*self.event_types.values(), *calls]))

    def most_events(self, max_events_per_request: int) -> int:
        """The most events one request of this app may carry: the service's cap, or the burst of
        the app's rate limit when that is smaller."""
        limit = self.rate_limit
        return max_events_per_request if limit is None else min(max_events_per_request, limit.burst)

    @property
    def secret_key(self) -> bytes:
        """The app's first key."""
        return self.secret_keys[0]

    @property
    def allows_any_origin(self) -> bool:
        """True when any web page may post to this app."""
        return self.browsers and not self.allowed_origins


@dataclass(frozen=True)
class DatabaseLocation:
    """Where the data goes: a libpq URL, or the embedded server's data directory."""

    url: str | None = None
    embedded_path: str | None = None
    # (address, port): the embedded server listens there over TCP too (for Metabase, Grafana...).
    embedded_listen: tuple[str, int] | None = None


@dataclass(frozen=True)
class WriterSettings:
    """How rows are gathered and written."""

    connections: int = 2
    max_queued_rows: int = 100_000
    max_batch_rows: int = 5000
    max_delay_ms: int = 0
    # Seconds without an answer before a transaction's requests get 503.
    flush_timeout: float = 10.0


@dataclass(frozen=True)
class Config:
    """The whole configuration, as the service uses it."""

    path: str
    database: DatabaseLocation
    apps: Mapping[str, App]
    tables: Mapping[str, TableDecl] = field(default_factory=dict)
    listen: str = DEFAULT_LISTEN
    # Where /metrics and the live view are served instead of the public port; None: no admin port.
    admin_listen: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    writer: WriterSettings = WriterSettings()
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    # table name -> the columns of a user-made table whose duplicates are skipped.
    skip_duplicates: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # The proxies whose X-Forwarded-For is believed: addresses and networks.
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    # The table that keeps the events of refused requests (declared in `tables` too); None: off.
    rejected_events: str | None = None
    # Processes that serve the listening socket together (supervisor.py); 1: this process alone.
    workers: int = 1
    # Events one request may carry; more gets 413 before any is checked.
    max_events_per_request: int = DEFAULT_MAX_EVENTS_PER_REQUEST

    def table_names(self) -> list[str]:
        """Every table the service writes to or declares, each once, in a stable order."""
        names = dict.fromkeys(self.tables)
        for app in self.apps.values():
            names.update(dict.fromkeys(app.event_types.values()))
        return list(names)
