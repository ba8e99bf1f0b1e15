"""The service's routes served in memory: no PostgreSQL, no sockets, no reactor running.

A request is made by the real site's request factory on twisted.web's DummyChannel (as klein's
own tests do), rendered by the real Routes and AttolyticsSite, and its answer read back from
what the channel's transport was given. Tables are those start-up would describe for freshly
created declared tables; the writer is a fake that records what it gets and stores nothing.
"""

import json

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyChannel

from attolytics.config import Config, parse_config
from attolytics.http.routes import Routes
from attolytics.http.site import AttolyticsSite
from attolytics.metrics import Metrics
from attolytics.outcomes import Stored
from attolytics.storage.declarations import declared_types
from attolytics.storage.table import Column, Table
from support.http import Answer


class FakeWriter:
    """A writer that stores nothing: each insert is recorded and answered at once with its row
    count, as if committed."""

    connected = True
    queued_rows = 0

    def __init__(self):
        # One entry per insert: [(table name, [row, ...]), ...] in the order the intake gave them.
        self.inserts: list[list[tuple[str, list[tuple]]]] = []
        self.sizes: list[int] = []

    def insert(self, batches, size: int = 0):
        self.inserts.append([(table.name, list(rows)) for table, rows in batches])
        self.sizes.append(size)
        return succeed(Stored(sum(len(rows) for _, rows in batches)))

    def drain(self):
        return succeed(None)

    @property
    def rows(self) -> dict[str, list[tuple]]:
        """Every row it got, by table name."""
        found: dict[str, list[tuple]] = {}
        for batches in self.inserts:
            for name, rows in batches:
                found.setdefault(name, []).extend(rows)
        return found

    @property
    def row_count(self) -> int:
        """How many rows it got in all."""
        return sum(len(rows) for batches in self.inserts for _, rows in batches)


def declared_tables(config: Config) -> dict[str, Table]:
    """The Tables start-up would describe for the configuration's declared tables, freshly
    created: no defaults, NOT NULL where required. Every table an app writes to must be declared:
    an existing table's columns are only known to a database."""
    types = declared_types(config)
    undeclared = [name for name in config.table_names() if name not in config.tables]
    if undeclared:
        raise ValueError(f"tables {undeclared} are not declared; in memory only declared tables exist")
    return {
        name: Table(name, [
            Column(column.name, types[name][column.name].ddl, types[name][column.name],
                   not_null=column.required, has_default=False, header=column.header,
                   source=column.source, anonymize=column.anonymize)
            for column in config.tables[name].columns
        ], key=tuple(column.name for column in config.tables[name].columns if column.unique))
        for name in config.table_names()
    }


class InMemoryService:
    """The routes of a configuration behind the real site, rendered one request at a time.

    With `ready=False` the routes are never served, as before start-up has checked the tables.
    """

    def __init__(self, config_text: str, ready: bool = True, peer: str = "192.168.1.1"):
        """`peer`: the address requests come from, or "unix" for a unix socket."""
        self.config = parse_config(config_text, "test.conf.yaml")
        self.metrics = Metrics()
        # The site's clock: requests arrive at its time (received_at), which a test may set.
        self.clock = Clock()
        self.peer = peer
        self.writer = FakeWriter()
        self.routes = Routes(self.config, self.metrics, None, self.clock)
        if ready:
            self.tables = declared_tables(self.config)
            self.routes.serve(self.tables, self.writer)
        self.site = AttolyticsSite(self.routes.resource(), self.config.max_body_bytes,
                                   self.config.request_timeout, self.routes.early_headers, self.metrics,
                                   reactor=self.clock)

    def request(self, method: str, path: str, body: bytes | None = None, headers=()) -> Answer:
        """One request, answered before this returns; `headers` are (name, value) pairs or a
        dict. A body gets a Content-Length, as a client sends it, unless one is given."""
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
        if body is not None and not any(name.lower() == "content-length" for name, _ in pairs):
            pairs.append(("Content-Length", str(len(body))))
        address = _peer_address(self.peer)
        channel = DummyChannel(address)
        channel.site = channel.factory = self.site
        channel.callLater = self.clock.callLater
        request = self.site.requestFactory(channel, True)
        for name, value in pairs:
            request.requestHeaders.addRawHeader(_bytes(name), _bytes(value))
        request.gotLength(len(body) if body is not None else 0)
        if body:
            request.handleContentChunk(body)
        request.requestReceived(method.encode("ascii"), _bytes(path), b"HTTP/1.1")
        if not (request.finished or request.refused):
            raise AssertionError(f"{method} {path} was not answered at once")
        return parse_answer(channel.transport.written.getvalue())

    def post(self, path: str, document, headers=None) -> Answer:
        """POST `document` as JSON, with Content-Type application/json unless given, as the
        HTTP client's send() does; `headers` is a dict or (name, value) pairs, repeats kept."""
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        if not any(name.lower() == "content-type" for name, _ in pairs):
            pairs.append(("Content-Type", "application/json"))
        return self.request("POST", path, json.dumps(document).encode(), pairs)

    def post_events(self, app_id: str, event_type: str, events, secret: str, headers=None) -> Answer:
        """POST events to the typed route."""
        return self.post(f"/apps/{app_id}/events/{event_type}",
                         {"secret_key": secret, "events": events}, headers)


def _peer_address(peer: str):
    """The address a connection from `peer` has: an IP address, or "unix" for a unix socket."""
    if peer == "unix":
        return UNIXAddress(b"/run/attolytics.sock")
    return IPv6Address("TCP", peer, 12344) if ":" in peer else IPv4Address("TCP", peer, 12344)


def parse_answer(data: bytes) -> Answer:
    """An HTTP/1.1 answer as written to the transport: status, headers (lower-case names, first
    value) and body, de-chunked when it was sent chunked."""
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator:
        raise AssertionError(f"no complete answer was written: {data[:200]!r}")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunked(body)
    return Answer(int(status_line.split(" ")[1]), headers, body)


def _dechunked(data: bytes) -> bytes:
    body = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return body
        body += data[:size]
        data = data[size + 2:]


def _bytes(text) -> bytes:
    return text if isinstance(text, bytes) else text.encode("latin-1")
