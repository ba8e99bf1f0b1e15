"""The running service: listens at once, connects to PostgreSQL, checks the tables, then serves."""

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import ILogObserver

from attolytics import systemd
from attolytics.api import EventsAPI
from attolytics.config import Config
from attolytics.database import Database
from attolytics.embedded import EmbeddedPostgres
from attolytics.logs import logger
from attolytics.schema import SchemaError, load_tables
from attolytics.site import AttolyticsSite
from attolytics.writer import Writer

log = logger(__name__)

MAX_RETRY_DELAY = 30.0
ANSWER_GRACE_SECONDS = 0.1


def _shielded(d: Deferred) -> Deferred:
    """A Deferred with d's outcome whose cancellation does not reach d."""
    shield = Deferred()

    def hand_off(result):
        if not shield.called:
            shield.callback(result)

    d.addBoth(hand_off)
    return shield


class AttolyticsService(Service):
    """Owns the listening port, the database pool and the embedded server, and their order.

    `on_fatal(message)` is called when start-up cannot go on (a table that does not fit the
    configuration, a port that cannot be opened): twistd exits; tests record it.
    """

    def __init__(self, config: Config, reactor, on_fatal, writer_factory=Writer):
        self.config = config
        # Builds the writer from (db, reactor, **settings); the benchmark swaps in its baselines.
        self.writer_factory = writer_factory
        self.reactor = reactor
        self.on_fatal = on_fatal
        self.api = EventsAPI(config)
        self.port = None
        self.db = None
        self.writer = None
        self.embedded = None
        self._embedded_started = None
        # Fires once start-up has ended: ready to serve, given up (on_fatal), or stopped.
        self.starting = None

    # Set by the twistd plugin for --log-format json; twistd logs to what the application names.
    log_observer = None

    def setServiceParent(self, parent):
        if self.log_observer is not None and hasattr(parent, "setComponent"):
            parent.setComponent(ILogObserver, self.log_observer)
        return super().setServiceParent(parent)

    def startService(self):
        super().startService()
        self.site = AttolyticsSite(
            self.api.resource(), self.config.max_body_bytes, self.api.early_headers,
            self.config.request_timeout, metrics=self.api.metrics,
        )
        listening = serverFromString(self.reactor, self.config.listen).listen(self.site)
        listening.addCallbacks(self._listening, self._cannot_listen)
        self.starting = Deferred.fromCoroutine(self._start_database())
        self.starting.addErrback(self._start_failed)

    def _listening(self, port):
        self.port = port
        log.info("listening on {address}", address=port.getHost())
        # twistd starts services before the reactor runs; a stop request that follows READY at
        # once needs the reactor's signal handling in place.
        self.reactor.callWhenRunning(systemd.notify, "READY=1")

    def _cannot_listen(self, failure):
        self.on_fatal(f"cannot listen on {self.config.listen}: {failure.getErrorMessage()}")

    async def _within(self, deadline: float, waiting: Deferred) -> bool:
        """Wait for `waiting` until `deadline` (reactor seconds); False if time ran out first."""
        sleep = Deferred()
        call = self.reactor.callLater(max(0.0, deadline - self.reactor.seconds()), sleep.callback, None)
        _, first = await DeferredList([waiting, sleep], fireOnOneCallback=True, consumeErrors=True)
        if call.active():
            call.cancel()
        return first == 0

    def _start_failed(self, failure):
        if failure.check(CancelledError) or not self.running:  # stopped while still starting
            return
        log.failure("start-up failed", failure=failure)
        self.on_fatal(f"start-up failed: {failure.getErrorMessage()}")

    async def _start_database(self) -> None:
        url = self.config.database.url
        if url is None:
            self.embedded = EmbeddedPostgres(self.config.database.embedded_path)
            self._embedded_started = deferToThread(self.embedded.start)
            try:
                # Shielded: a stop cancels start-up, but the thread runs on; _stop waits for it.
                url = await _shielded(self._embedded_started)
            except CancelledError:
                raise
            except Exception as e:
                self.on_fatal(f"cannot start the embedded PostgreSQL in {self.embedded.path}: {e}")
                return
            log.info("embedded PostgreSQL is running; connect with: psql '{url}'", url=url)
        delay = 1.0
        while self.running:
            db = Database(url, self.reactor, size=self.config.writer.connections)
            try:
                await db.connect()
                tables = await load_tables(db, self.config)
            except SchemaError as e:
                db.close()
                self.on_fatal(str(e))
                return
            except Exception as e:
                db.close()
                log.warn(
                    "cannot reach PostgreSQL ({error}); trying again in {delay:.0f} s",
                    error=str(e).strip(), delay=delay,
                )
                await deferLater(self.reactor, delay, lambda: None)
                delay = min(delay * 2, MAX_RETRY_DELAY)
                continue
            if not self.running:
                db.close()
                return
            self.db = db
            settings = self.config.writer
            self.writer = self.writer_factory(
                db, self.reactor, max_queued_rows=settings.max_queued_rows,
                max_rows_per_flush=settings.max_batch_rows, flush_delay=settings.max_delay_ms / 1000,
                flush_timeout=settings.flush_timeout,
                batch_observer=self.api.metrics.writer_batch_rows.observe,
            )
            self.api.ready(tables, self.writer)
            log.info("ready: {count} tables checked", count=len(tables))
            return

    def stopService(self):
        if not self.running:
            return succeed(None)
        systemd.notify("STOPPING=1")
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        """Stop listening, let the requests in flight finish, write what they queued, close.

        Each wait is bounded by what is left of shutdown_timeout; whatever is still queued
        then is answered 503, so no client gets a 200 for rows that were not committed.
        """
        deadline = self.reactor.seconds() + self.config.shutdown_timeout
        if self.port is not None:
            await self.port.stopListening()
        if self.starting is not None and not self.starting.called:
            self.starting.cancel()
        if not await self._within(deadline, self.site.in_flight.idle()):
            log.warn("stopping with {count} requests still unanswered",
                     count=len(self.site.in_flight.requests))
        if self.writer is not None and not await self._within(deadline, self.writer.drain()):
            log.warn("stopping with {rows} rows not written; their requests get 503",
                     rows=self.writer.queued_rows)
        if self.db is not None:
            self.db.close()
        # Answers just written sit in socket buffers until the reactor's next turns; give them
        # a moment before the reactor drops every connection.
        await deferLater(self.reactor, ANSWER_GRACE_SECONDS, lambda: None)
        if self._embedded_started is not None:
            # A server still starting is waited for, so that it is stopped rather than orphaned.
            await self._within(deadline, _shielded(self._embedded_started))
            await deferToThread(self.embedded.stop)
            log.info("embedded PostgreSQL stopped")
