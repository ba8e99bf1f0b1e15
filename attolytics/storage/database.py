"""The database service: connects to PostgreSQL (trying again with backoff while it cannot),
makes the tables ready, hands the pool and the tables on, and closes the pool at shutdown."""

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import deferLater

from attolytics.config import Config
from attolytics.logs import logger
from attolytics.storage.declarations import DeclaredTypes
from attolytics.storage.pool import Backoff, ConnectionPool
from attolytics.storage.tables import SchemaError, prepare_tables

log = logger(__name__)


class DatabaseService(Service):
    """Connects once started; `on_ready(pool, tables)` is called when the tables are ready to
    write to, `on_fatal(message)` when start-up cannot go on (a table that does not fit)."""

    def __init__(self, config: Config, types: DeclaredTypes, reactor, locate, on_ready, on_fatal):
        self.config = config
        self.types = types
        self.reactor = reactor
        # locate() -> Deferred of the database URL (the embedded server's, once it runs).
        self.locate = locate
        self.on_ready = on_ready
        self.on_fatal = on_fatal
        self.pool = None
        # Fires once start-up has ended: ready, given up (on_fatal), or stopped.
        self.starting = None

    def startService(self):
        super().startService()
        self.starting = Deferred.fromCoroutine(self._connect())
        self.starting.addErrback(self._failed)

    async def _connect(self) -> None:
        try:
            url = await self.locate()
        except CancelledError:
            raise
        except Exception as e:  # the embedded server did not start
            self.on_fatal(str(e))
            return
        backoff = Backoff()
        while self.running:
            pool = ConnectionPool(url, self.reactor, size=self.config.writer.connections)
            try:
                await pool.connect()
                tables = await prepare_tables(pool, self.config, self.types)
            except CancelledError:
                pool.close()
                raise
            except SchemaError as e:
                pool.close()
                self.on_fatal(str(e))
                return
            except Exception as e:
                pool.close()
                delay = backoff.next()
                log.warn("cannot reach PostgreSQL ({error}); trying again in {delay:g} s",
                         error=str(e).strip(), delay=delay)
                await deferLater(self.reactor, delay, lambda: None)
                continue
            self.pool = pool
            self.on_ready(pool, tables)
            log.info("ready: {count} tables checked", count=len(tables))
            return

    def _failed(self, failure):
        if failure.check(CancelledError) or not self.running:  # stopped while still starting
            return
        log.failure("start-up failed", failure=failure)
        self.on_fatal(f"start-up failed: {failure.getErrorMessage()}")

    def stopService(self):
        super().stopService()
        if self.starting is not None and not self.starting.called:
            self.starting.cancel()
        if self.pool is not None:
            self.pool.close()
        return succeed(None)
