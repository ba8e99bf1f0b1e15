"""PgBouncer of a test's own (Debian's pgbouncer) in front of the test's PostgreSQL, in
transaction mode, which the test may stop, crash and start again on the same port."""

import contextlib
import os
import pwd
import signal
import socket
import stat
import subprocess
from pathlib import Path
from urllib.parse import quote

import psycopg2
from psycopg2.extensions import parse_dsn
from twisted.internet.threads import deferToThread

from support.http import free_port
from support.programs import required_program
from support.waiting import wait_until

INSTALL = "apt-get install pgbouncer (Debian's PgBouncer)"
READY_WAIT = 15.0
STOP_WAIT = 15.0
UNIX_PATH_MAX = 108  # bytes of a unix socket's path, its final NUL included (Linux)


def pgbouncer_binary() -> str:
    """The pgbouncer executable: see support.programs."""
    return required_program("pgbouncer", INSTALL)


def _version(binary: str) -> tuple[int, ...]:
    """The version of that pgbouncer: (1, 18, 0), say."""
    first = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout.split()
    return tuple(int(part) for part in first[1].split(".") if part.isdigit())


def _server_address(database_url: str) -> tuple[str, int]:
    """(host or socket directory, port) that libpq reaches for `database_url`, defaults applied."""
    connection = psycopg2.connect(database_url)
    try:
        return connection.info.host, connection.info.port
    finally:
        connection.close()


def _unprivileged_user(host: str) -> pwd.struct_passwd:
    """Whom a root test runs PgBouncer as (it refuses to run as root): the owner of the server's
    socket directory, who alone may reach the socket there (the embedded server's is its data
    directory, mode 0700, owned by the `pgserver` user it runs as); else nobody."""
    if host.startswith("/"):
        owner = os.stat(host).st_uid
        if owner != 0:
            return pwd.getpwuid(owner)
    return pwd.getpwnam("nobody")


def _traversable(path: Path) -> None:
    """Let other users pass through every directory above `path` (pytest makes its temporary
    directories 0700; the embedded server's start does the same for its data directory)."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _setting(value) -> str:
    """A value of a PgBouncer connection string, quoted (a quote in it doubled)."""
    return "'" + str(value).replace("'", "''") + "'"


class PgBouncer:
    """A PgBouncer in transaction mode in `directory` (its configuration, log, pid file and unix
    socket), listening on 127.0.0.1 at a port it keeps across restarts; `url` reaches the
    database of `database_url` through it. Started by start(); each start's process id is in
    `pids`. `settings` go in its [pgbouncer] section too (server_login_retry = 1, say).

    It stops in one of three ways: "safe" (SIGINT, as Debian's systemd unit stops it: the
    transactions under way end first), "immediate" (every connection closed at once) or
    "crash" (SIGKILL, as kill -9).
    """

    def __init__(self, binary: str, directory: Path, database_url: str, settings: dict | None = None):
        self.binary = binary
        self.directory = Path(directory)
        self.port = free_port()
        target = parse_dsn(database_url)
        self.dbname = target["dbname"]
        self.user = target.get("user") or pwd.getpwuid(os.getuid()).pw_name
        self.url = f"postgresql://{quote(self.user, safe='')}@127.0.0.1:{self.port}/{quote(self.dbname, safe='')}"
        host, port = _server_address(database_url)
        self.run_as = _unprivileged_user(host) if os.geteuid() == 0 else None
        # Since 1.23 SIGTERM waits for every client to leave; SIGQUIT is the immediate shutdown.
        immediate = signal.SIGQUIT if _version(binary) >= (1, 23) else signal.SIGTERM
        self.signals = {"safe": signal.SIGINT, "immediate": immediate, "crash": signal.SIGKILL}
        self.config_path = self.directory / "pgbouncer.ini"
        self.log_path = self.directory / "pgbouncer.log"
        self.output_path = self.directory / "pgbouncer.out"
        server = {"host": host, "port": port, "dbname": self.dbname, "user": self.user,
                  "password": target.get("password")}
        self._write_files(server, {"pool_mode": "transaction", **(settings or {})})
        self.process: subprocess.Popen | None = None
        self.pids: list[int] = []

    def _write_files(self, server: dict, settings: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        connection = " ".join(f"{k}={_setting(v)}" for k, v in server.items() if v)
        users = self.directory / "users.txt"
        # Clients are trusted (only this machine reaches 127.0.0.1), yet must be listed.
        users.write_text('"{}" ""\n'.format(self.user.replace('"', '""')))
        lines = [
            "[databases]", f"{self.dbname} = {connection}", "", "[pgbouncer]",
            "listen_addr = 127.0.0.1", f"listen_port = {self.port}",
            f"unix_socket_dir = {self._socket_dir()}", f"logfile = {self.log_path}",
            f"pidfile = {self.directory / 'pgbouncer.pid'}",
            "auth_type = trust", f"auth_file = {users}",
        ] + [f"{name} = {value}" for name, value in settings.items()]
        if self.run_as is not None:
            lines.append(f"user = {self.run_as.pw_name}")
        self.config_path.write_text("\n".join(lines) + "\n")
        for path in (users, self.config_path):
            path.chmod(0o600)
        if self.run_as is not None:
            _traversable(self.directory)
            for path in (self.directory, users, self.config_path):
                os.chown(path, self.run_as.pw_uid, self.run_as.pw_gid)
            self.directory.chmod(0o700)

    def _socket_dir(self) -> str:
        """Where it makes its unix socket: its directory; none (tests use TCP) when the socket's
        path would be longer than the kernel takes, which PgBouncer would cut short."""
        path = self.directory / f".s.PGSQL.{self.port}"
        return str(self.directory) if len(os.fsencode(path)) < UNIX_PATH_MAX else ""

    @property
    def output(self) -> str:
        """What PgBouncer wrote to its standard output and error (its log lines too)."""
        return self.output_path.read_text(errors="replace") if self.output_path.exists() else ""

    def alive(self) -> bool:
        """Whether the PgBouncer last started is still running."""
        return self.process is not None and self.process.poll() is None

    def _listening(self) -> bool:
        if not self.alive():
            raise AssertionError(f"pgbouncer exited with {self.process.returncode}:\n{self.output}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def start_now(self) -> None:
        """Start it and wait until it accepts connections (blocking)."""
        assert not self.alive(), "pgbouncer is running already"
        with open(self.output_path, "ab") as out:
            self.process = subprocess.Popen([self.binary, str(self.config_path)], stdin=subprocess.DEVNULL,
                                            stdout=out, stderr=subprocess.STDOUT)
        self.pids.append(self.process.pid)
        wait_until(self._listening, READY_WAIT, f"pgbouncer listening on 127.0.0.1:{self.port}")

    def stop_now(self, how: str = "safe") -> None:
        """Stop it `how` ("safe", "immediate" or "crash") and wait until it exits (blocking)."""
        if not self.alive():
            return
        self.process.send_signal(self.signals[how])
        try:
            self.process.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_WAIT)
            raise AssertionError(f"pgbouncer did not exit within {STOP_WAIT:g} s of a {how} shutdown")

    def start(self):
        """start_now(), in a thread: a Deferred, so the reactor goes on meanwhile."""
        return deferToThread(self.start_now)

    def stop(self, how: str = "safe"):
        """stop_now(), in a thread: a safe shutdown waits for the transactions under way, which
        the service finishes on the reactor."""
        return deferToThread(self.stop_now, how)

    def kill(self):
        """Crash it: SIGKILL, as kill -9 does."""
        return self.stop("crash")

    def restart(self, how: str = "safe"):
        """Stop it `how`, then start it again on the same port."""
        def both():
            self.stop_now(how)
            self.start_now()
        return deferToThread(both)


@contextlib.contextmanager
def running_pgbouncer(database_url: str, directory: Path, settings: dict | None = None):
    """A started PgBouncer in front of the database of `database_url`; stopped on leaving, at
    once (waiting for no client)."""
    bouncer = PgBouncer(pgbouncer_binary(), directory, database_url, settings)
    try:
        bouncer.start_now()
        yield bouncer
    finally:
        bouncer.stop_now("immediate")
