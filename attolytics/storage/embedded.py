"""The embedded PostgreSQL (from the pgserver package), for running without a database server,
and the service that starts and stops it."""

import os
import warnings
from pathlib import Path

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThread

from attolytics.config import Config
from attolytics.logs import logger
from attolytics.shutdown import Shutdown, shielded

log = logger(__name__)


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in one directory; start() and stop() block."""

    def __init__(self, path: str):
        self.path = path
        self._server = None

    def start(self) -> str:
        """Initialise the data directory if needed, start the server, return its connection URL."""
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset; harmless here.
            warnings.simplefilter("ignore")
            import pgserver
        from pgserver.utils import PostmasterInfo

        os.makedirs(self.path, exist_ok=True)
        running = PostmasterInfo.read_from_pgdata(Path(self.path))
        if running is not None and running.is_running():
            # Another process (another instance, a psql session via pgserver) started it: use
            # it, and leave it running at shutdown.
            log.info("using the embedded PostgreSQL already running in {path}", path=self.path)
            return running.get_uri()
        # The class itself, not get_server(), which would return a cached handle without
        # starting a server stopped since. cleanup_mode=None: pgserver's atexit hook must not
        # stop the server behind our back; stop() does it at the right point of shutdown.
        self._server = pgserver.PostgresServer(Path(self.path).resolve(), cleanup_mode=None)
        return self._server.get_uri()

    def stop(self, mode: str = "fast") -> None:
        """Stop the server if this process started it, keeping the data.

        `mode` is pg_ctl's: "fast" by default; tests use "immediate" to pull the plug.
        """
        if self._server is None:
            return
        import pgserver

        server, self._server = self._server, None
        try:
            pgserver.pg_ctl(["-w", "-m", mode, "stop"], pgdata=server.pgdata, user=server.system_user)
        except Exception as e:  # already stopped, or the data directory vanished
            log.warn("could not stop the embedded PostgreSQL cleanly: {error}", error=e)


class EmbeddedPostgresService(Service):
    """Starts the embedded PostgreSQL (in a thread: it takes seconds) and stops it at shutdown,
    if this process started it."""

    def __init__(self, path: str, shutdown: Shutdown):
        self.server = EmbeddedPostgres(path)
        self.shutdown = shutdown
        self._started = None

    def startService(self):
        super().startService()
        self._started = deferToThread(self.server.start)
        self._started.addCallbacks(self._running, self._failed)

    def _running(self, url: str) -> str:
        if not self.shutdown.begun:  # else it is stopped as soon as it runs
            log.info("embedded PostgreSQL is running; connect with: psql '{url}'", url=url)
        return url

    def _failed(self, failure):
        raise EmbeddedFailed(
            f"cannot start the embedded PostgreSQL in {self.server.path}: {failure.getErrorMessage()}"
        )

    def url(self) -> Deferred:
        """Fires with the server's connection URL once it runs, or fails with EmbeddedFailed; for
        the one service that connects to it.

        Cancelling it does not stop the start: stopService waits for it, then stops the server.
        """
        return shielded(self._started)

    def stopService(self):
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self._started is None:
            return
        # A server still starting is waited for, so that it is stopped rather than orphaned.
        await self.shutdown.within(shielded(self._started))
        await deferToThread(self.server.stop)
        log.info("embedded PostgreSQL stopped")


class EmbeddedFailed(Exception):
    """The embedded PostgreSQL could not be started; the message says where and why."""


def database_location(config: Config, shutdown: Shutdown):
    """Where the database is: (the embedded server's service, to start first, or None; and
    locate() -> a Deferred of the database URL): the configured URL, else the embedded server's."""
    if config.database.url is not None:
        url = config.database.url
        return None, lambda: succeed(url)
    embedded = EmbeddedPostgresService(config.database.embedded_path, shutdown)
    return embedded, embedded.url
