"""A small pool of txpostgres connections to one PostgreSQL server."""

from twisted.internet.defer import Deferred
from attolytics.logs import logger
from txpostgres.txpostgres import Connection

log = logger(__name__)


class DatabaseUnavailable(Exception):
    """No connection to PostgreSQL can serve this request now; the client should retry."""


class Database:
    """Hands out one connection per operation; psycopg2's async connections run one query at a time."""

    def __init__(self, dsn: str, reactor, size: int = 4):
        self.dsn = dsn
        self.reactor = reactor
        self.size = size
        self._idle: list[Connection] = []
        self._busy: set[Connection] = set()
        self._waiters: list[Deferred] = []
        self._closed = False

    async def connect(self) -> None:
        """Open every connection of the pool; on failure close what was opened and raise."""
        opened = []
        try:
            for _ in range(self.size):
                connection = Connection(self.reactor)
                await connection.connect(self.dsn)
                opened.append(connection)
        except BaseException:
            for connection in opened:
                connection.close()
            raise
        self._idle.extend(opened)

    def close(self) -> None:
        """Close every connection; operations still waiting for one fail."""
        self._closed = True
        for connection in self._idle + list(self._busy):
            connection.close()
        self._idle.clear()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(DatabaseUnavailable("the database pool is closed"))

    def _acquire(self) -> Deferred:
        if self._closed:
            raise DatabaseUnavailable("the database pool is closed")
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                self._busy.add(connection)
                d = Deferred()
                d.callback(connection)
                return d
        if not self._busy:
            raise DatabaseUnavailable("no connection to the database")
        waiter = Deferred()
        self._waiters.append(waiter)
        return waiter

    def _release(self, connection: Connection) -> None:
        self._busy.discard(connection)
        if self._closed or connection.closed:
            if not self._idle and not self._busy:
                waiters, self._waiters = self._waiters, []
                for waiter in waiters:
                    waiter.errback(DatabaseUnavailable("no connection to the database"))
            return
        if self._waiters:
            self._busy.add(connection)
            self._waiters.pop(0).callback(connection)
        else:
            self._idle.append(connection)

    async def _run(self, method: str, *args):
        connection = await self._acquire()
        try:
            return await getattr(connection, method)(*args)
        finally:
            self._release(connection)

    def runQuery(self, sql: str, params=None) -> Deferred:
        """Run one query in its own transaction; fires with its rows."""
        return Deferred.fromCoroutine(self._run("runQuery", sql, params))

    def runOperation(self, sql: str, params=None) -> Deferred:
        """Run one statement in its own transaction; fires with None."""
        return Deferred.fromCoroutine(self._run("runOperation", sql, params))

    def runInteraction(self, interaction, *args) -> Deferred:
        """Run interaction(cursor, *args) inside BEGIN ... COMMIT; fires with its result."""
        return Deferred.fromCoroutine(self._run("runInteraction", interaction, *args))
