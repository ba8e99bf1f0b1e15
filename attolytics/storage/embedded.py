"""The embedded PostgreSQL (from the pgserver package), for running without a database server,
and the service that starts and stops it.

The embedded database belongs to one service: the process that starts it holds a lock on its data
directory (flock, released by the kernel when the process ends, however it ends), and stops it at
shutdown. Another process finds the lock taken and refuses (EmbeddedInUse); `check` reads the
server the owner runs. A server left running by an owner that died is taken over: stopped and
started again, with this process's options."""

import fcntl
import functools
import logging
import os
import shlex
import subprocess
import warnings
from pathlib import Path

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThread

from attolytics.config import Config
from attolytics.logs import logger
from attolytics.shutdown import Shutdown, shielded

log = logger(__name__)

# PostgreSQL's port, which its unix socket is named after too.
DEFAULT_PORT = 5432
# Seconds pg_ctl may take to start or stop the server.
PG_CTL_SECONDS = 60


class EmbeddedInUse(Exception):
    """Another running process owns the embedded data directory; the message says what to do."""


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in one directory; start() and stop() block.

    `listen` is (address, port): the server listens there over TCP too, not only on its socket.
    """

    def __init__(self, path: str, listen: tuple[str, int] | None = None):
        self.path = path
        self.listen = listen
        self._server = None  # the server this process started, to stop
        self._lock = None  # the data directory's descriptor, locked while this process owns it

    def start(self) -> str:
        """Take the data directory (raising EmbeddedInUse when another process has it), initialise
        it if need be, start the server, and return its connection URL."""
        pgserver = _pgserver()
        os.makedirs(self.path, exist_ok=True)
        self._lock = _lock_directory(self.path)
        try:
            self._server = _server_class(pgserver)(Path(self.path).resolve(), self.listen)
        except BaseException:
            self._release()
            raise
        return self._server.url

    def running_url(self) -> str | None:
        """The URL of the server running in the data directory (another process's), or None."""
        from pgserver.utils import PostmasterInfo

        running = PostmasterInfo.read_from_pgdata(Path(self.path))
        if running is None or not running.is_running() or running.status != "ready":
            return None
        return _url(running.socket_dir, running.port)

    def stop(self, mode: str = "fast") -> bool:
        """Stop the server if this process started it, keeping the data; whether it did.

        `mode` is pg_ctl's: "fast" by default; tests use "immediate" to pull the plug.
        """
        if self._server is None:
            self._release()
            return False
        import pgserver

        server, self._server = self._server, None
        try:
            pgserver.pg_ctl(["-w", "-m", mode, "stop"], pgdata=server.pgdata, user=server.system_user,
                            timeout=PG_CTL_SECONDS)
            return True
        except Exception as e:  # already stopped, or the data directory vanished
            log.warn("could not stop the embedded PostgreSQL cleanly: {error}", error=e)
            return False
        finally:
            self._release()

    def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            os.close(lock)


def _pgserver():
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset; harmless here.
        warnings.simplefilter("ignore")
        import pgserver
    # pgserver logs each failed command whole through the standard library, which would print it
    # (Python's last resort) where no handler is set up: our errors say what matters, in one line.
    chatter = logging.getLogger("pgserver")
    if not chatter.handlers:
        chatter.addHandler(logging.NullHandler())
    return pgserver


def _lock_directory(path: str) -> int:
    """The data directory's descriptor, locked for this process; EmbeddedInUse when another has it."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise EmbeddedInUse(
            f"the embedded PostgreSQL in {path} is in use by another running Attolytics (a service, or a "
            "check): the embedded database belongs to one service; to serve with more processes set "
            "workers: N (they share it), or give every instance a PostgreSQL server of your own "
            "(database: url)") from None
    return descriptor


def _url(socket_dir, port: int | None) -> str:
    """The URL of the server with its socket in `socket_dir`, named after `port`."""
    return f"postgresql://postgres:@/postgres?host={socket_dir}&port={port or DEFAULT_PORT}"


def tcp_url(address: str, port: int) -> str:
    """The URL a client on another host (or a tool) reaches the embedded server with over TCP."""
    host = "127.0.0.1" if address in ("*", "0.0.0.0") else "::1" if address == "::" else address
    return f"postgresql://postgres@{f'[{host}]' if ':' in host else host}:{port}/postgres"


@functools.cache
def _server_class(pgserver):
    """pgserver's server, started with this service's options: pgserver's own start listens on a
    unix socket alone (postgres -h ""), which its command line would hold over any setting."""
    return type("_Server", (_StartedHere, pgserver.PostgresServer), {})


class _StartedHere:
    """Mixed into pgserver.PostgresServer: initdb and its handling of root stay pgserver's (run by
    its constructor); starting the server is ours."""

    def __init__(self, pgdata: Path, listen: tuple[str, int] | None):
        self.listen = listen
        self.url = None
        # cleanup_mode=None: pgserver's atexit hook must not stop the server behind our back;
        # stop() does it at the right point of shutdown.
        super().__init__(pgdata, cleanup_mode=None)

    def ensure_postgres_running(self) -> None:
        """Start the server (called by pgserver's constructor, under its lock, after initdb)."""
        from pgserver import pg_ctl
        from pgserver.utils import PostmasterInfo, ensure_prefix_permissions, find_suitable_socket_dir

        left = PostmasterInfo.read_from_pgdata(self.pgdata)
        if left is not None and left.is_running():
            log.info("taking over the embedded PostgreSQL left running in {path} (pid {pid}): restarting it",
                     path=str(self.pgdata), pid=left.pid)
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.system_user, timeout=PG_CTL_SECONDS)
        socket_dir = find_suitable_socket_dir(self.pgdata, self.runtime_path)
        if self.system_user is not None and socket_dir != self.pgdata:
            ensure_prefix_permissions(socket_dir)
            socket_dir.chmod(0o777)
        address, port = self.listen or ("", DEFAULT_PORT)
        options = ["-o", f"-h {shlex.quote(address)} -p {port} -k {shlex.quote(str(socket_dir))}"]
        logged = self.log.stat().st_size if self.log.exists() else 0
        try:
            pg_ctl(["-w", "-t", str(PG_CTL_SECONDS), *options, "-l", str(self.log), "start"],
                   pgdata=self.pgdata, user=self.system_user, timeout=PG_CTL_SECONDS + 10)
        except subprocess.CalledProcessError:
            raise RuntimeError(_why_not_started(self.log, logged)) from None
        self._postmaster_info = PostmasterInfo.read_from_pgdata(self.pgdata)
        self.url = _url(socket_dir, port)


def _why_not_started(server_log: Path, offset: int) -> str:
    """What the server logged (from `offset`) about why it did not start: its errors, and the
    details and failed steps that explain them (the port in use, a data directory of another
    major version)."""
    try:
        with open(server_log, "rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        lines = []
    said = []
    for line in lines:
        level, _, message = line.partition(":  ")
        if level.endswith(("FATAL", "ERROR", "DETAIL")) or (level.endswith("LOG") and "could not" in message):
            said.append(message.strip())
    reasons = "; ".join(said) or "see the log"
    return f"the server did not start: {reasons} ({server_log})"


class EmbeddedPostgresService(Service):
    """Starts the embedded PostgreSQL (in a thread: it takes seconds) and stops it at shutdown,
    if this process started it."""

    def __init__(self, path: str, shutdown: Shutdown, listen: tuple[str, int] | None = None):
        self.server = EmbeddedPostgres(path, listen)
        self.shutdown = shutdown
        self._started = None

    def startService(self):
        super().startService()
        self._started = deferToThread(self.server.start)
        self._started.addCallbacks(self._running, self._failed)

    def _running(self, url: str) -> str:
        if not self.shutdown.begun:  # else it is stopped as soon as it runs
            log.info("embedded PostgreSQL is running; connect with: psql '{url}'{tcp}", url=url,
                     tcp=f" or, over TCP, {tcp_url(*self.server.listen)}" if self.server.listen else "")
        return url

    def _failed(self, failure):
        if failure.check(EmbeddedInUse):
            raise EmbeddedFailed(failure.getErrorMessage())
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
        # A server still starting is waited for, so that it is stopped rather than orphaned; a
        # start that failed has nothing to stop.
        await self.shutdown.within(shielded(self._started).addErrback(lambda failure: None))
        if await deferToThread(self.server.stop):
            log.info("embedded PostgreSQL stopped")


class EmbeddedFailed(Exception):
    """The embedded PostgreSQL could not be started; the message says where and why."""


def database_location(config: Config, shutdown: Shutdown):
    """Where the database is: (the embedded server's service, to start first, or None; and
    locate() -> a Deferred of the database URL): the configured URL, else the embedded server's."""
    if config.database.url is not None:
        url = config.database.url
        return None, lambda: succeed(url)
    embedded = EmbeddedPostgresService(config.database.embedded_path, shutdown, config.database.embedded_listen)
    return embedded, embedded.url
