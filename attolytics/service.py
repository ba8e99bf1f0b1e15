"""The running service, made of small services: the embedded PostgreSQL (when no database is
configured), the database, the writer and the HTTP endpoint. They start in that order and stop
in the reverse one, each step awaited: stop listening, drain the writer, close the pool, stop the
embedded PostgreSQL."""

from types import SimpleNamespace

from twisted.application.internet import TimerService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import deferLater

from attolytics import systemd
from attolytics.config import Config
from attolytics.http.endpoint import HttpEndpointService
from attolytics.http.routes import Routes
from attolytics.http.site import AttolyticsSite
from attolytics.metrics import Metrics
from attolytics.reload import Reloader, event_ids
from attolytics.shutdown import Shutdown
from attolytics.storage.database import DatabaseService
from attolytics.storage.declarations import declared_types, uuid_ids
from attolytics.storage.embedded import EmbeddedPostgresService
from attolytics.storage.maintenance import PartitionMaintenance
from attolytics.storage.writer import Writer, WriterService

# Answers just written sit in socket buffers until the reactor's next turns; they get this long
# before the reactor drops every connection.
ANSWER_GRACE_SECONDS = 0.1
# With worker processes, how often each writes the gauges the others read.
METRICS_REFRESH_SECONDS = 1.0


class AttolyticsService(MultiService):
    """Starts its children in order; stops them in reverse order, one after the other (where
    MultiService would stop them all at once), all within the shutdown's deadline; reloads its
    configuration on demand."""

    def __init__(self, reactor, shutdown: Shutdown):
        super().__init__()
        self.reactor = reactor
        self.shutdown = shutdown
        self.reloader = None

    def reload(self):
        """Reload the configuration file (SIGHUP): a Deferred firing with True when the new one
        is in force, False when it was refused and the old one stays."""
        return self.reloader.reload()

    def startService(self):
        self.shutdown.reset()
        super().startService()

    def stopService(self):
        if not self.running:
            return succeed(None)
        systemd.notify("STOPPING=1")
        Service.stopService(self)
        # Start-up still under way is abandoned at once; then each child stops in its turn.
        self.shutdown.begin()
        return Deferred.fromCoroutine(self._stop_in_turn())

    async def _stop_in_turn(self) -> None:
        for child in reversed(list(self)):
            await child.stopService()
        await deferLater(self.reactor, ANSWER_GRACE_SECONDS, lambda: None)


def attolytics_service(config: Config, reactor, on_fatal, endpoint=None,
                       writer_factory=Writer, overrides=None, clock=None) -> AttolyticsService:
    """The service for `config`: `on_fatal(message)` is called when start-up cannot go on;
    `endpoint` is where to listen (config.listen by default); `overrides(config)` applies the
    command line's options to a reloaded file; `clock` (the reactor by default) is the time
    partitions follow.

    Raises ConfigError for a declared column whose type nobody knows.
    """
    types = declared_types(config)
    if endpoint is None:
        endpoint = serverFromString(reactor, config.listen)
    metrics = Metrics()
    shutdown = Shutdown(reactor, config.shutdown_timeout)
    routes = Routes(config, metrics, event_ids(config, uuid_ids(config, types)), clock or reactor)
    site = AttolyticsSite(routes.resource(), config.max_body_bytes, config.request_timeout,
                          routes.early_headers, metrics, reactor)
    service = AttolyticsService(reactor, shutdown)
    writer = WriterService(reactor, config.writer, shutdown, metrics.writer_batch_rows.observe,
                           make=writer_factory)
    maintenance = PartitionMaintenance(clock or reactor, metrics)
    writer.make_room = maintenance.make_room

    def ready(pool, tables, refused_pool) -> None:
        routes.serve(tables, writer.start_writing(pool, refused_pool), writer.refused_writer)
        maintenance.serve(pool, database.config, database.types)

    def listening(port) -> None:
        # twistd starts services before the reactor runs; a stop request that follows READY at
        # once needs the reactor's signal handling in place.
        reactor.callWhenRunning(systemd.notify, "READY=1")

    locate = database_location(config, shutdown, service)
    database = DatabaseService(config, types, reactor, shutdown, locate, ready, on_fatal, clock)
    http = HttpEndpointService(endpoint, config.listen, site, shutdown, listening, on_fatal)
    children = (("database", database), ("writer", writer), ("maintenance", maintenance), ("http", http))
    for name, child in children:
        child.setName(name)
        child.setServiceParent(service)
    parts = SimpleNamespace(routes=routes, site=site, writer=writer, database=database, metrics=metrics,
                            shutdown=shutdown, maintenance=maintenance)
    service.reloader = Reloader(config, reactor, parts, overrides)
    metrics.watch(metrics.writer_queue_rows, lambda: writer.writer.queued_rows if writer.writer else 0)
    metrics.watch(metrics.database_ready, lambda: 1 if routes.ready else 0)
    if metrics.multiprocess:  # the other workers read these gauges from this one's files
        refresh = TimerService(METRICS_REFRESH_SECONDS, metrics.refresh)
        refresh.clock = reactor
        refresh.setServiceParent(service)
    return service


def database_location(config: Config, shutdown: Shutdown, service: AttolyticsService):
    """locate() -> a Deferred of the database URL: the configured one, or the embedded server's,
    whose service is then the first child of `service`."""
    if config.database.url is not None:
        return lambda: succeed(config.database.url)
    embedded = EmbeddedPostgresService(config.database.embedded_path, shutdown)
    embedded.setName("embedded")
    embedded.setServiceParent(service)
    return embedded.url
