"""The running service, made of small services: the embedded PostgreSQL (when no database is
configured), the database, the writer and the HTTP endpoint. They start in that order and stop
in the reverse one, each step awaited: stop listening, drain the writer, close the pool, stop the
embedded PostgreSQL."""

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
from attolytics.shutdown import Shutdown
from attolytics.storage.database import DatabaseService
from attolytics.storage.declarations import declared_types, uuid_ids
from attolytics.storage.embedded import EmbeddedPostgresService
from attolytics.storage.writer import Writer, WriterService

# Answers just written sit in socket buffers until the reactor's next turns; they get this long
# before the reactor drops every connection.
ANSWER_GRACE_SECONDS = 0.1


class AttolyticsService(MultiService):
    """Starts its children in order; stops them in reverse order, one after the other (where
    MultiService would stop them all at once), all within the shutdown's deadline."""

    def __init__(self, reactor, shutdown: Shutdown):
        super().__init__()
        self.reactor = reactor
        self.shutdown = shutdown

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
                       writer_factory=Writer) -> AttolyticsService:
    """The service for `config`: `on_fatal(message)` is called when start-up cannot go on;
    `endpoint` is where to listen (config.listen by default).

    Raises ConfigError for a declared column whose type nobody knows.
    """
    types = declared_types(config)
    if endpoint is None:
        endpoint = serverFromString(reactor, config.listen)
    metrics = Metrics()
    shutdown = Shutdown(reactor, config.shutdown_timeout)
    routes = Routes(config, metrics, _event_ids(config, uuid_ids(config, types)))
    site = AttolyticsSite(routes.resource(), config.max_body_bytes, config.request_timeout,
                          routes.early_headers, metrics, reactor)
    service = AttolyticsService(reactor, shutdown)
    if config.database.url is None:
        embedded = EmbeddedPostgresService(config.database.embedded_path, shutdown)
        embedded.setName("embedded")
        embedded.setServiceParent(service)
        locate = embedded.url
    else:
        def locate():
            return succeed(config.database.url)
    writer = WriterService(reactor, config.writer, shutdown, metrics.writer_batch_rows.observe,
                           make=writer_factory, keep_refused=config.rejected_events is not None)

    def ready(pool, tables, refused_pool) -> None:
        routes.serve(tables, writer.start_writing(pool, refused_pool), writer.refused_writer)

    def listening(port) -> None:
        # twistd starts services before the reactor runs; a stop request that follows READY at
        # once needs the reactor's signal handling in place.
        reactor.callWhenRunning(systemd.notify, "READY=1")

    children = {
        "database": DatabaseService(config, types, reactor, shutdown, locate, ready, on_fatal),
        "writer": writer,
        "http": HttpEndpointService(endpoint, config.listen, site, shutdown, listening, on_fatal),
    }
    for name, child in children.items():
        child.setName(name)
        child.setServiceParent(service)
    metrics.writer_queue_rows.set_function(lambda: writer.writer.queued_rows if writer.writer else 0)
    metrics.database_ready.set_function(lambda: 1 if routes.ready else 0)
    return service


def _event_ids(config: Config, ids: dict[str, str]) -> dict:
    """App id -> event type -> the uuid id column of its table, for the browser client."""
    found = {}
    for app in config.apps.values():
        columns = {type_id: ids[table] for type_id, table in app.event_types.items() if table in ids}
        if columns:
            found[app.app_id] = columns
    return found
