"""The database service: connects to PostgreSQL (trying again with backoff while it cannot),
makes the tables of each configuration ready before the services after it take that
configuration, and closes the pool at shutdown."""

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import deferLater

from attolytics.logs import logger
from attolytics.reconfigurable import ReconfigurableService
from attolytics.shutdown import Shutdown
from attolytics.storage.pool import Backoff, ConnectionPool
from attolytics.storage.preparation import SchemaError, prepare_tables

log = logger(__name__)


class DatabaseService(ReconfigurableService):
    """Connects once started, with the configuration it was handed last; `tables` holds the
    tables ready to write to once it is connected, `on_fatal(message)` is called when start-up
    cannot go on (a table that does not fit), and `problem()` says why it cannot serve now.

    With rejected_events, refused events get a pool of their own (one connection), so that a
    table of refused events that is locked or slow never takes a connection stored events need.

    A shutdown abandons a start-up still under way as soon as it begins; the pool closes when
    this service's turn to stop comes.
    """

    def __init__(self, reactor, clock, shutdown: Shutdown, locate, on_fatal):
        self.reactor = reactor
        # Now, for the partitions a table needs.
        self.clock = clock
        self.shutdown = shutdown
        # locate() -> Deferred of the database URL (the embedded server's, once it runs).
        self.locate = locate
        self.on_fatal = on_fatal
        self.configuration = None  # the one in force; start-up connects with the latest
        self.url = None
        self.pool = None
        self.refused_pool = None
        # Table name -> Table, once ready; and the configuration they were made ready for.
        self.tables = None
        self.tables_for = None
        # While start-up tries again: why ("cannot reach PostgreSQL: ...; retrying").
        self._start_problem = None
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
            configuration = self.configuration
            config = configuration.config
            pool = ConnectionPool(url, self.reactor, size=config.writer.connections)
            refused_pool = ConnectionPool(url, self.reactor, size=1) if config.rejected_events else None
            try:
                await pool.connect()
                tables = await prepare_tables(pool, config, configuration.types, self.clock)
                if refused_pool is not None:
                    await refused_pool.connect()
            except Exception as e:
                _close(pool, refused_pool)
                if self.shutdown.begun:
                    return  # abandoned: what failed does not matter any more
                if isinstance(e, SchemaError):
                    self.on_fatal(str(e))
                    return
                delay = backoff.next()
                self._start_problem = f"cannot reach PostgreSQL: {' '.join(str(e).split()) or repr(e)}; retrying"
                log.warn("cannot reach PostgreSQL ({error}); trying again in {delay:g} s",
                         error=str(e).strip(), delay=delay)
                await deferLater(self.reactor, delay, lambda: None)
                continue
            if self.shutdown.begun:  # a connect or query that cancelling could not stop
                _close(pool, refused_pool)
                return
            self.pool, self.refused_pool = pool, refused_pool
            self.tables, self.tables_for = tables, configuration
            self._start_problem = None
            log.info("ready: {count} tables checked", count=len(tables))
            return

    def problem(self) -> str | None:
        """Why the database cannot serve now, for /readyz: start-up trying again, or every
        connection lost and the pool failing to reconnect; None when nothing is known amiss."""
        pool = self.pool
        if pool is not None and not pool.connected and pool.last_error is not None:
            return f"cannot reach PostgreSQL: {pool.last_error}; reconnecting"
        return self._start_problem

    def reconfigure(self, configuration):
        """Make the tables of `configuration` ready before anything else takes it (a Deferred);
        fails with SchemaError, having changed nothing, when the database does not fit it.
        While start-up is still under way, it goes on with this configuration."""
        if self.pool is None or configuration is self.tables_for:
            self.configuration = configuration
            return succeed(None)
        return Deferred.fromCoroutine(self._prepare(configuration))

    async def _prepare(self, configuration) -> None:
        config = configuration.config
        tables = await prepare_tables(self.pool, config, configuration.types, self.clock)
        if config.rejected_events and self.refused_pool is None:
            refused_pool = ConnectionPool(self.url, self.reactor, size=1)
            try:
                await refused_pool.connect()
            except BaseException:
                refused_pool.close()
                raise
            self.refused_pool = refused_pool
        self.configuration = self.tables_for = configuration
        self.tables = tables

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
        _close(self.pool, self.refused_pool)
        return succeed(None)


def _close(*pools) -> None:
    for pool in pools:
        if pool is not None:
            pool.close()
