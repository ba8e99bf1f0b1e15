"""The running service, a tree of small services: the embedded PostgreSQL (when no database is
configured), the database, the writer, partition upkeep, the routes and the HTTP endpoint. Each
that depends on the configuration takes it from its parent, in that order, at start-up and at
each reload; they start in that order and stop in the reverse one, each step awaited: stop
listening, drain the writer, close the pool, stop the embedded PostgreSQL."""

from dataclasses import dataclass
from typing import Callable

from twisted.application.internet import TimerService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredLock, maybeDeferred, succeed
from twisted.internet.task import deferLater

from attolytics.config import Config, ConfigError
from attolytics.http.admin import AdminResource, admin_pages
from attolytics.http.endpoint import HttpEndpointService
from attolytics.http.routes import Routes
from attolytics.http.site import AttolyticsSite
from attolytics.live.feed import LiveFeed
from attolytics.live.page import live_pages
from attolytics.logs import logger
from attolytics.metrics import Metrics
from attolytics.reconfigurable import ReconfigurableService, hand_down
from attolytics.reload import Configuration, read_again
from attolytics.shutdown import Shutdown
from attolytics.storage.database import DatabaseService
from attolytics.storage.embedded import database_location
from attolytics.storage.maintenance import PartitionMaintenance
from attolytics.storage.preparation import SchemaError
from attolytics.storage.writer import WriterService

# Reloads log in the namespace log shippers already filter their lines on.
log = logger("attolytics.reload")

# Answers just written sit in socket buffers until the reactor's next turns; they get this long
# before the reactor drops every connection.
ANSWER_GRACE_SECONDS = 0.1
# With worker processes, how often each writes the gauges the others read.
METRICS_REFRESH_SECONDS = 1.0


@dataclass(frozen=True)
class Process:
    """What the process a service runs in chose where it started (tap.py), handed to the tree."""

    reactor: object
    # The time partitions and rate limits follow: the reactor, unless a test moves its own.
    clock: object
    metrics: Metrics
    # notify(state): tells systemd (or a worker's parent) READY=1, RELOADING=1, STOPPING=1.
    notify: Callable[[str], bool]
    # on_fatal(message): start-up cannot go on.
    on_fatal: Callable[[str], None]
    # read() -> Config: the configuration file read again, with the command line's overrides.
    read: Callable[[], Config]
    # Whether a line is logged for each request (not with --quiet): a line not logged is not built.
    access_log: bool = True


class AttolyticsService(MultiService):
    """The root of the tree: hands each configuration to its children in order (the first at
    start-up, again once `database` is ready, then each reload's); starts its children in order;
    stops them in reverse order, one after the other (where MultiService would stop them all at
    once), all within the shutdown's deadline."""

    def __init__(self, configuration: Configuration, process: Process, shutdown: Shutdown,
                 children: list, database: DatabaseService | None = None):
        super().__init__()
        self.configuration = configuration
        self.process = process
        self.shutdown = shutdown
        self.database = database
        self._turn = DeferredLock()  # one configuration handed down at a time
        for name, child in children:
            child.setName(name)
            child.setServiceParent(self)

    def startService(self):
        self.shutdown.reset()
        # The first configuration, handed down at once: nothing waits for the database yet.
        first = self._turn.run(lambda: Deferred.fromCoroutine(self._hand_down(self.configuration)))
        first.addErrback(lambda failure: self.process.on_fatal(failure.getErrorMessage()))
        self.process.metrics.config_loaded.set(self.process.reactor.seconds())
        super().startService()
        if self.database is not None:
            self.database.starting.addCallback(self._database_ready)

    def _database_ready(self, _) -> None:
        """The database is ready: the configuration in force is handed down again, so that the
        services after it take its tables."""
        if self.database.pool is None or self.shutdown.begun:
            return
        handed = self._turn.run(lambda: Deferred.fromCoroutine(self._hand_down(self.configuration)))
        handed.addErrback(lambda failure: self.process.on_fatal(failure.getErrorMessage()))

    def reload(self) -> Deferred:
        """Reload the configuration file (SIGHUP), after any reload under way: a Deferred firing
        with True when the new one is in force, False when it was refused and the old one stays."""
        return self._turn.run(lambda: Deferred.fromCoroutine(self._reload()))

    async def _reload(self) -> bool:
        notify, metrics = self.process.notify, self.process.metrics
        notify("RELOADING=1")
        path = self.configuration.config.path
        log.info("reloading {file}", file=path)
        try:
            # The database comes first and may refuse, having changed nothing; the rest cannot.
            await self._hand_down(read_again(self.process.read, self.configuration))
        except (ConfigError, SchemaError) as e:
            return self._refused(path, str(e))
        except Exception as e:  # the database could not be reached to make the tables ready
            return self._refused(path, f"{path}: the tables could not be made ready: {str(e).strip() or e!r}")
        metrics.config_reloads.labels("applied").inc()
        metrics.config_loaded.set(self.process.reactor.seconds())
        log.info("reloaded {file}", file=path)
        notify("READY=1")
        return True

    async def _hand_down(self, configuration: Configuration) -> None:
        await hand_down(self, configuration)
        self.shutdown.seconds = configuration.config.shutdown_timeout
        self.configuration = configuration

    def _refused(self, path: str, problem: str) -> bool:
        log.error("{file}: reload refused, the configuration in force stays: {problem}", file=path,
                  problem=problem)
        self.process.metrics.config_reloads.labels("refused").inc()
        self.process.notify("READY=1")
        return False

    def stopService(self):
        if not self.running:
            return succeed(None)
        self.process.notify("STOPPING=1")
        Service.stopService(self)
        # Start-up still under way is abandoned at once; then each child stops in its turn.
        self.shutdown.begin()
        return Deferred.fromCoroutine(self._stop_in_turn())

    async def _stop_in_turn(self) -> None:
        for child in reversed(list(self)):
            await maybeDeferred(child.stopService)
        await deferLater(self.process.reactor, ANSWER_GRACE_SECONDS, lambda: None)


class RoutesService(ReconfigurableService):
    """The routes and the site's limits follow the configuration; once `database` is ready, the
    routes serve its tables through the writers of `writers`."""

    def __init__(self, routes: Routes, site: AttolyticsSite, database, writers):
        self.routes = routes
        self.site = site
        self.database = database
        self.writers = writers

    def reconfigure(self, configuration: Configuration) -> None:
        """Apps, keys, origins, event types and limits are the configuration's from the next
        request on; and its tables, once the database has made them ready."""
        config = configuration.config
        self.routes.configure(config, configuration.event_ids)
        self.site.limit(config.max_body_bytes, config.request_timeout)
        if self.database.tables is not None:
            self.routes.serve(self.database.tables, self.writers.writer, self.writers.refused_writer)


def attolytics_service(configuration: Configuration, process: Process, endpoint,
                       admin_endpoint=None) -> AttolyticsService:
    """The service for `configuration`, listening on `endpoint` (an IStreamServerEndpoint), and
    with `admin_listen` on `admin_endpoint` too."""
    config = configuration.config
    shutdown = Shutdown(process.reactor, config.shutdown_timeout)
    embedded, locate = database_location(config, shutdown)
    database = DatabaseService(process.reactor, process.clock, shutdown, locate, process.on_fatal)
    maintenance = PartitionMaintenance(database, process.clock, process.metrics)
    writers = WriterService(database, maintenance, process.reactor, shutdown, process.metrics)
    return serving(configuration, process, endpoint, shutdown, embedded, database, writers, maintenance,
                   admin_endpoint)


def serving(configuration: Configuration, process: Process, endpoint, shutdown: Shutdown, embedded,
            database: DatabaseService, writers, maintenance, admin_endpoint=None) -> AttolyticsService:
    """The tree of a service whose storage services are built: the embedded PostgreSQL (or
    None), the database, `writers` (a service whose `writer` and `refused_writer` store what
    the routes accept) and partition upkeep, then the routes, the admin port (on
    `admin_endpoint`, with admin_listen) and the HTTP endpoint."""
    config, metrics, reactor = configuration.config, process.metrics, process.reactor
    routes = Routes(config, metrics, configuration.event_ids, process.clock, database.problem)
    # The live view of the public port's requests, served on the admin port only.
    live = LiveFeed(reactor) if admin_endpoint is not None else None
    site = AttolyticsSite(routes.resource(), config.max_body_bytes, config.request_timeout,
                          routes.early_headers, metrics, reactor, access_log=process.access_log, live=live)

    def listening(port) -> None:
        # twistd starts services before the reactor runs; a stop request that follows READY at
        # once needs the reactor's signal handling in place.
        reactor.callWhenRunning(process.notify, "READY=1")

    http = HttpEndpointService(endpoint, f"{config.listen} (listen)", site, shutdown, listening, process.on_fatal)
    children = [("embedded", embedded)] if embedded is not None else []
    children += [("database", database), ("writer", writers), ("maintenance", maintenance),
                 ("routes", RoutesService(routes, site, database, writers))]
    if admin_endpoint is not None:
        # Stopped after the public port (children stop in reverse order): scraped to the end.
        admin = AdminResource({**admin_pages(routes), **live_pages(live)})
        admin_site = AttolyticsSite(admin, config.max_body_bytes, config.request_timeout, None, metrics, reactor,
                                    access_log=process.access_log)
        children.append(("admin", HttpEndpointService(admin_endpoint, f"{config.admin_listen} (admin_listen)",
                                                      admin_site, shutdown, lambda port: None, process.on_fatal)))
        # Stopped before the admin port: it ends the live view's streams, which would hold its stop.
        children.append(("live", live))
    children.append(("http", http))
    metrics.watch(metrics.database_ready, lambda: 1 if routes.ready else 0)
    if metrics.multiprocess:  # the other workers read these gauges from this one's files
        refresh = TimerService(METRICS_REFRESH_SECONDS, metrics.refresh)
        refresh.clock = reactor
        children.append(("metrics", refresh))
    return AttolyticsService(configuration, process, shutdown, children, database)
