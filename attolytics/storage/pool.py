"""A small, self-healing pool of txpostgres connections to one PostgreSQL server."""

import ipaddress
import socket

from psycopg2.extensions import parse_dsn
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from txpostgres.txpostgres import Connection, RollbackFailed

from attolytics.logs import logger
from attolytics.outcomes import DatabaseUnavailable

log = logger(__name__)

CONNECT_TIMEOUT = 5.0
# TCP keepalives, so a server that vanished (a network partition, a host gone) is noticed in
# about 20 s even on an idle connection; libpq ignores them on unix sockets.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 3, "keepalives_count": 3}


class Backoff:
    """The pause before each new attempt to reach PostgreSQL: doubling up to a bound, and short
    again once an attempt succeeds."""

    FIRST_DELAY = 0.5
    MAX_DELAY = 10.0

    def __init__(self):
        self.delay = self.FIRST_DELAY

    def next(self) -> float:
        """The pause before the next attempt."""
        delay = self.delay
        self.delay = min(delay * 2, self.MAX_DELAY)
        return delay

    def reset(self) -> None:
        """An attempt succeeded: the next failure waits the shortest pause again."""
        self.delay = self.FIRST_DELAY


class QueryTimeout(DatabaseUnavailable):
    """PostgreSQL did not answer in time; the connection was closed, the outcome is unknown."""


async def _resolved_address(params: dict) -> dict:
    """{"hostaddr": ip} for a single host name, looked up in a thread: libpq would look it up
    inside the (non-blocking) connect call and block the reactor for as long as DNS takes."""
    host = params.get("host", "")
    if not host or "hostaddr" in params or "," in host or host.startswith("/") or _is_ip(host):
        return {}
    try:
        infos = await deferToThread(socket.getaddrinfo, host, None, type=socket.SOCK_STREAM)
    except OSError as e:
        raise DatabaseUnavailable(f"cannot look up {host}: {e}") from None
    return {"hostaddr": infos[0][4][0]}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _Connection(Connection):
    """A txpostgres connection that reports, instead of raising, a server gone while it is idle."""

    on_lost = None

    def doRead(self):
        try:
            super().doRead()
        except Exception as e:  # the server closed the connection or died
            log.warn("lost a database connection: {error}", error=str(e).strip())
            self.close()
            if self.on_lost is not None:
                self.on_lost(self)


class ConnectionPool:
    """Hands out one connection per operation; psycopg2's async connections run one query at a time.

    A connection that breaks is dropped and replaced in the background with backoff; while no
    connection is alive, operations fail at once with DatabaseUnavailable.
    """

    def __init__(self, dsn: str, reactor, size: int = 4):
        self.dsn = dsn
        self.reactor = reactor
        self.size = size
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._waiters: list[Deferred] = []
        self._replacing = 0
        self._backoff = Backoff()
        self._closed = False
        # libpq's words, on one line, for the last attempt to reconnect that failed; None after
        # one that succeeded.
        self.last_error = None

    async def connect(self) -> None:
        """Open every connection of the pool; on failure close what was opened and raise."""
        opened = []
        try:
            for _ in range(self.size):
                opened.append(await self._open())
        except BaseException:
            for connection in opened:
                connection.close()
            raise
        self._idle.extend(opened)

    async def _open(self) -> _Connection:
        """One new connection; libpq's connect_timeout does not apply to async connects."""
        connection = _Connection(self.reactor)
        params = parse_dsn(self.dsn)
        options = {k: v for k, v in KEEPALIVES.items() if k not in params}
        options.update(await _resolved_address(params))
        try:
            await self._bounded(connection, CONNECT_TIMEOUT, DatabaseUnavailable,
                                connection.connect(self.dsn, **options))
        except BaseException:
            # Cancelled or failed, a connect under way would go on by itself and stay open.
            if connection._connection is not None:
                connection.close()
            raise
        connection.on_lost = self._lost
        return connection

    async def _bounded(self, connection, seconds: float | None, timed_out, work: Deferred):
        """Await `work` on `connection`; past `seconds`, close the connection and raise `timed_out`.

        Closing is the only way to stop libpq waiting (cancelling a query would block).
        """
        timer = self.reactor.callLater(seconds, connection.close) if seconds else None
        try:
            return await work
        except RollbackFailed:
            raise  # the caller discards the connection, whatever the clock says
        except Exception:
            if timer is not None and not timer.active():
                raise timed_out(f"no answer from PostgreSQL within {seconds:g} s") from None
            raise
        finally:
            if timer is not None and timer.active():
                timer.cancel()

    @property
    def connected(self) -> int:
        """How many connections are alive now."""
        return len(self._idle) + len(self._busy)

    def close(self) -> None:
        """Close every connection; operations still waiting for one fail."""
        self._closed = True
        for connection in self._idle + list(self._busy):
            connection.on_lost = None
            connection.close()
        self._idle.clear()
        self._fail_waiters("the database pool is closed")

    def _fail_waiters(self, reason: str) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(DatabaseUnavailable(reason))

    def _acquire(self) -> Deferred:
        if self._closed:
            raise DatabaseUnavailable("the database pool is closed")
        if self._idle:
            connection = self._idle.pop()
            self._busy.add(connection)
            d = Deferred()
            d.callback(connection)
            return d
        if not self._busy:
            raise DatabaseUnavailable("no connection to the database")
        waiter = Deferred()
        self._waiters.append(waiter)
        return waiter

    def _release(self, connection: _Connection) -> None:
        self._busy.discard(connection)
        if connection.closed:
            self._lost(connection)
        elif self._closed:
            connection.close()
        elif self._waiters:
            self._busy.add(connection)
            self._waiters.pop(0).callback(connection)
        else:
            self._idle.append(connection)

    def _lost(self, connection: _Connection) -> None:
        """Forget a broken connection and start replacing it."""
        connection.on_lost = None
        if connection in self._idle:
            self._idle.remove(connection)
        self._busy.discard(connection)
        if self._closed:
            return
        if not self.connected:
            self._fail_waiters("no connection to the database")
        self._replace_later()

    def _replace_later(self) -> None:
        if self._closed or self.connected + self._replacing >= self.size:
            return
        self._replacing += 1
        self.reactor.callLater(self._backoff.next(), self._replace)

    def _replace(self) -> None:
        async def attempt():
            try:
                connection = await self._open()
            except Exception as e:
                self._replacing -= 1
                self.last_error = " ".join(str(e).split()) or repr(e)
                log.warn("cannot reconnect to PostgreSQL: {error}", error=str(e).strip())
                self._replace_later()
                return
            self._replacing -= 1
            if self._closed:
                connection.close()
                return
            if not self.connected:
                log.info("reconnected to PostgreSQL")
            self.last_error = None
            self._backoff.reset()
            self._busy.add(connection)
            self._release(connection)
            self._replace_later()

        Deferred.fromCoroutine(attempt())

    async def _run(self, method: str, *args, timeout: float | None = None):
        connection = await self._acquire()
        # Past the timeout the operation fails and the closed connection is replaced; what the
        # server did is unknown.
        try:
            return await self._bounded(connection, timeout, QueryTimeout,
                                       getattr(connection, method)(*args))
        except RollbackFailed:
            # The transaction's state is unknown: this connection must not be used again.
            connection.close()
            raise
        finally:
            self._release(connection)

    def runQuery(self, sql: str, params=None, timeout: float | None = None) -> Deferred:
        """Run one query in its own transaction; fires with its rows."""
        return Deferred.fromCoroutine(self._run("runQuery", sql, params, timeout=timeout))

    def runOperation(self, sql: str, params=None, timeout: float | None = None) -> Deferred:
        """Run one statement (or several, as one implicit transaction); fires with None."""
        return Deferred.fromCoroutine(self._run("runOperation", sql, params, timeout=timeout))

    def runInteraction(self, interaction, *args, timeout: float | None = None) -> Deferred:
        """Run interaction(cursor, *args) inside BEGIN ... COMMIT; fires with its result."""
        return Deferred.fromCoroutine(
            self._run("runInteraction", interaction, *args, timeout=timeout)
        )
