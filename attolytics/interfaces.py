"""The shapes that cross from one side of the service to the other, named: the rows of one table
that a request hands the writer, and what each side may ask of the tables, the writer and the
pool it is given. Both sides and the tests name them; this module imports neither side."""

from typing import Any, Mapping, NamedTuple, Protocol

from twisted.internet.defer import Deferred


class EventTable(Protocol):
    """A destination table as the HTTP side uses it: its row builder (storage/table.py's Table)."""

    name: str
    columns: Mapping[str, Any]  # column name -> Column
    request_keys: frozenset  # what its rows take from the request (header names, received_at, ...)

    @property
    def decodable(self) -> bool:
        """Whether the C decoder can read this table's events."""

    def event_struct(self, tag: str | None = None) -> type:
        """The msgspec Struct the C decoder reads an event of this table as."""

    def decoded(self, events: list) -> Any:
        """Events the C decoder read as event_struct(): their fields, and the keys they held."""

    def decoded_rows(self, events: Any, request: Mapping[str, Any] | None) -> list[tuple]:
        """The rows of decoded events; raises Undecided where only rows() can tell."""

    def rows(self, events: list[tuple[int, Any]], request: Mapping[str, Any] | None = None,
             ignore: str | None = None) -> list[tuple]:
        """The rows of (index, event) pairs; raises EventRejected for the first at fault."""

    def row(self, event: Any, index: int, request: Mapping[str, Any] | None = None,
            ignore: str | None = None) -> tuple:
        """The row of one event, or EventRejected."""


class TableRows(NamedTuple):
    """The rows of one request for one table, in the order of its events."""

    table: EventTable
    rows: list[tuple]


class RowWriter(Protocol):
    """The writer as the HTTP side uses it: the only way rows reach PostgreSQL."""

    @property
    def connected(self) -> bool:
        """Whether a database connection is up to write with."""

    queued_rows: int  # rows waiting to be written

    def insert(self, batches: list[TableRows], size: int = 0) -> Deferred:
        """Queue one request's rows; fires with a Stored after the COMMIT that holds them all."""

    def drain(self) -> Deferred:
        """Fires once every queued row has been written (or has failed)."""


class ConnectionPool(Protocol):
    """Connections to PostgreSQL, as the writer, the catalog and the upkeep of partitions use them."""

    @property
    def connected(self) -> int:
        """How many connections are alive now."""

    def runQuery(self, sql: str, params=None, timeout: float | None = None) -> Deferred:
        """Run a query; fires with its rows."""

    def runOperation(self, sql: str, params=None, timeout: float | None = None) -> Deferred:
        """Run a statement; fires with None."""

    def runInteraction(self, interaction, *args, timeout: float | None = None) -> Deferred:
        """Run interaction(cursor, *args) in a transaction; fires with what it returns."""

    def close(self) -> None:
        """Close every connection."""
