"""The database service: connects to PostgreSQL (trying again with backoff while it cannot),
makes the tables ready, hands the pool and the tables on, and closes the pool at shutdown."""

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import deferLater

from attolytics.config import Config
from attolytics.logs import logger
from attolytics.shutdown import Shutdown
from attolytics.storage.declarations import DeclaredTypes
from attolytics.storage.pool import Backoff, ConnectionPool
from attolytics.storage.preparation import SchemaError, prepare_tables

log = logger(__name__)


class DatabaseService(Service):
    """Connects once started; `on_ready(pool, tables, refused_pool)` is called when the tables are
    ready to write to, `on_fatal(message)` when start-up cannot go on (a table that does not fit).

    With rejected_events, refused events get a pool of their own (one connection), so that a
    table of refused events that is locked or slow never takes a connection stored events need.

    A shutdown abandons a start-up still under way as soon as it begins; the pool closes when
    this service's turn to stop comes.
    """

    def __init__(self, config: Config, types: DeclaredTypes, reactor, shutdown: Shutdown, locate,
                 on_ready, on_fatal, clock=None):
        self.config = config
        self.types = types
        self.reactor = reactor
        # Now, for the partitions a table needs; the reactor's time unless a test moves it.
        self.clock = clock or reactor
        self.shutdown = shutdown
        # locate() -> Deferred of the database URL (the embedded server's, once it runs).
        self.locate = locate
        self.on_ready = on_ready
        self.on_fatal = on_fatal
        self.url = None
        self.pool = None
        self.refused_pool = None
        # Fires once start-up has ended: ready, given up (on_fatal), or abandoned.
        self.starting = None
        shutdown.on_begin(self._abandon_start)

    def startService(self):
        super().startService()
        self.starting = Deferred.fromCoroutine(self._connect())
        self.starting.addErrback(self._failed)

    async def _connect(self) -> None:
        try:
            self.url = url = await self.locate()
        except Exception as e:  # the embedded server did not start, or start-up was abandoned
            if not self.shutdown.begun:
                self.on_fatal(str(e))
            return
        backoff = Backoff()
        while not self.shutdown.begun:
            pool = ConnectionPool(url, self.reactor, size=self.config.writer.connections)
            refused_pool = ConnectionPool(url, self.reactor, size=1) if self.config.rejected_events else None
            try:
                await pool.connect()
                tables = await prepare_tables(pool, self.config, self.types, self.clock)
                if refused_pool is not None:
                    await refused_pool.connect()
            except Exception as e:
                pool.close()
                if refused_pool is not None:
                    refused_pool.close()
                if self.shutdown.begun:
                    return  # abandoned: what failed does not matter any more
                if isinstance(e, SchemaError):
                    self.on_fatal(str(e))
                    return
                delay = backoff.next()
                log.warn("cannot reach PostgreSQL ({error}); trying again in {delay:g} s",
                         error=str(e).strip(), delay=delay)
                await deferLater(self.reactor, delay, lambda: None)
                continue
            if self.shutdown.begun:  # a connect or query that cancelling could not stop
                pool.close()
                if refused_pool is not None:
                    refused_pool.close()
                return
            self.pool, self.refused_pool = pool, refused_pool
            self.on_ready(pool, tables, refused_pool)
            log.info("ready: {count} tables checked", count=len(tables))
            return

    async def prepare(self, config: Config, types: DeclaredTypes):
        """Make the tables of a reloaded configuration ready: (tables, refused_pool), or None
        while start-up is still under way (it goes on with this configuration). Raises
        SchemaError, having changed nothing, when the database does not fit it."""
        if self.pool is None:
            self.config, self.types = config, types
            return None
        tables = await prepare_tables(self.pool, config, types, self.clock)
        if config.rejected_events and self.refused_pool is None:
            refused_pool = ConnectionPool(self.url, self.reactor, size=1)
            try:
                await refused_pool.connect()
            except BaseException:
                refused_pool.close()
                raise
            self.refused_pool = refused_pool
        self.config, self.types = config, types
        return tables, self.refused_pool

    def _abandon_start(self) -> None:
        if self.starting is not None and not self.starting.called:
            self.starting.cancel()

    def _failed(self, failure):
        if failure.check(CancelledError) or self.shutdown.begun:  # abandoned while starting
            return
        log.failure("start-up failed", failure=failure)
        self.on_fatal(f"start-up failed: {failure.getErrorMessage()}")

    def stopService(self):
        super().stopService()
        for pool in (self.pool, self.refused_pool):
            if pool is not None:
                pool.close()
        return succeed(None)
