"""Several worker processes serving one listening socket (`workers: N`): this process, the one
twistd starts, opens the socket once (and the embedded PostgreSQL, when there is no database
configured), starts N workers that adopt the socket (attolytics/worker.py), starts again one
that dies, passes SIGHUP on to all, and at SIGTERM stops them all and waits for each to drain.

systemd hears from this process alone: READY=1 once every worker serves; RELOADING=1 and READY=1
around a reload that every worker has finished.
"""

import json
import os
import shutil
import sys
import tempfile

from prometheus_client import multiprocess
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.internet.task import deferLater

from attolytics.logs import logger
from attolytics.reconfigurable import ReconfigurableService
from attolytics.reload import Configuration
from attolytics.service import AttolyticsService, Process
from attolytics.shutdown import Shutdown
from attolytics.storage.embedded import database_location
from attolytics.twisted_internals import close_without_shutdown

log = logger(__name__)

# The descriptor a worker finds the listening socket on.
LISTENING_FD = 3
# The worker's end of the pipe it tells its parent READY=1 and RELOADING=1 on.
NOTIFY_FD = 4
# The descriptor a worker finds the admin port's listening socket on (with admin_listen).
ADMIN_FD = 5
# The worker's standard output (its log lines, formatted) and error (the last words of a worker
# that cannot start, a traceback): this process writes both where it logs, each line whole.
OUT_FD, ERR_FD = 1, 2
LOG_FDS = (OUT_FD, ERR_FD)
# How long a worker must have served before its exit counts as a crash to restart, not as a
# start-up that cannot succeed; and the pauses before starting one again.
SETTLED_SECONDS = 10.0
FIRST_RESTART_DELAY, MAX_RESTART_DELAY = 0.5, 10.0
# Past the shutdown deadline, how long a worker gets to exit before it is killed.
KILL_GRACE_SECONDS = 5.0


class _Worker(ProcessProtocol):
    """One worker process, as its parent sees it."""

    def __init__(self, processes: "WorkerProcesses", number: int):
        self.processes = processes
        self.number = number
        self.pid = None
        self.started = processes.reactor.seconds()
        self.ready = False
        self.ended = Deferred()
        self._told = b""
        self._logged = {fd: b"" for fd in LOG_FDS}
        self._states: list[Deferred] = []  # waiting for the next READY=1

    def connectionMade(self):
        self.pid = self.transport.pid
        # What the worker must not find on its command line (which every local user can read),
        # it reads from its standard input before it starts.
        self.transport.write(json.dumps({"database_url": self.processes.url}).encode())
        self.transport.closeStdin()

    def childDataReceived(self, fd: int, data: bytes):
        if fd in LOG_FDS:
            self._log(fd, data)
            return
        self._told += data
        *lines, self._told = self._told.split(b"\n")
        for line in lines:
            if line == b"READY=1":
                self.ready = True
                waiting, self._states = self._states, []
                for waiter in waiting:
                    waiter.callback(None)
                self.processes.worker_ready(self)

    def _log(self, fd: int, data: bytes) -> None:
        """Pass on the whole lines of `data`, keeping a line's start until its end comes."""
        logged = self._logged[fd] + data
        end = logged.rfind(b"\n") + 1
        self._logged[fd] = logged[end:]
        if not end:
            return
        text = logged[:end].decode(errors="replace")
        if fd == OUT_FD:
            self.processes.log_lines(text)
            return
        for line in text.splitlines():  # not a log line: logged as one, in the log's format
            log.error("worker {number} (pid {pid}): {line}", number=self.number, pid=self.pid, line=line)

    def next_ready(self) -> Deferred:
        """Fires at the worker's next READY=1 (after a reload), or when it ends."""
        waiter = Deferred()
        self._states.append(waiter)
        return waiter

    def signal(self, name: str) -> None:
        """Send SIGTERM, SIGHUP or SIGKILL ("TERM", ...), unless it has ended."""
        if not self.ended.called:
            self.transport.signalProcess(name)

    def processEnded(self, reason):
        for fd in LOG_FDS:
            if self._logged[fd]:  # a last line cut short as the worker died
                self._log(fd, b"\n")
        self.ended.callback(None)  # first: a waiter below may look
        waiting, self._states = self._states, []
        for waiter in waiting:
            waiter.callback(None)
        self.processes.worker_ended(self, reason.value)


class WorkerProcesses(ReconfigurableService):
    """Starts, watches and stops `count` workers once the listening socket is open and the
    database is known (`locate()` -> Deferred of its URL); tells `notify` READY=1 once they all
    serve; a new configuration is each worker's to read again. The workers' log lines reach
    `log_lines` (whole lines, as text), so that one process alone writes the log."""

    def __init__(self, reactor, count: int, endpoint, locate, worker_args: list[str], shutdown, notify,
                 on_fatal, log_lines, admin_endpoint=None, names=("listen", "admin_listen")):
        self.reactor = reactor
        self.count = count
        self.endpoint = endpoint
        self.admin_endpoint = admin_endpoint
        # What names each port in a message: its description and key.
        self.names = names
        self.locate = locate
        self.worker_args = worker_args
        self.shutdown = shutdown
        self.notify = notify
        self.on_fatal = on_fatal
        self.log_lines = log_lines
        self.port = None
        self.admin_port = None
        self.url = None
        self.workers: dict[int, _Worker] = {}
        self.stopping = False
        self._announced = False
        self._delay = FIRST_RESTART_DELAY
        self.metrics_dir = None

    def startService(self):
        super().startService()
        self.metrics_dir = tempfile.mkdtemp(prefix="attolytics-metrics-")
        Deferred.fromCoroutine(self._start()).addErrback(self._failed)

    async def _start(self) -> None:
        self.port = await _listening(self.endpoint, self.names[0])
        self.port.stopReading()  # the workers accept; this process only holds the socket open
        log.info("listening on {address} for {count} workers", address=self.port.getHost(), count=self.count)
        if self.admin_endpoint is not None:
            self.admin_port = await _listening(self.admin_endpoint, self.names[1])
            self.admin_port.stopReading()
            log.info("admin port on {address} for {count} workers", address=self.admin_port.getHost(),
                     count=self.count)
        self.url = await self.locate()
        for number in range(1, self.count + 1):
            self._spawn(number)

    def _failed(self, failure) -> None:
        if not self.stopping:
            self.on_fatal(f"cannot start the workers: {failure.getErrorMessage()}")

    def _spawn(self, number: int) -> None:
        if self.stopping:
            return
        worker = _Worker(self, number)
        env = {key: value for key, value in os.environ.items() if key != "NOTIFY_SOCKET"}
        # prometheus_client reads it when the worker imports it: the worker writes its values there.
        env["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir
        fds = {0: "w", 1: "r", 2: "r", LISTENING_FD: self.port.fileno(), NOTIFY_FD: "r"}
        if self.admin_port is not None:
            fds[ADMIN_FD] = self.admin_port.fileno()
        self.reactor.spawnProcess(worker, sys.executable, self.command(number), env=env, childFDs=fds)
        self.workers[number] = worker
        log.info("started worker {number} (pid {pid})", number=number, pid=worker.pid)

    def command(self, number: int) -> list[str]:
        """The command line of worker `number`: twistd's options (tap.Options), with the
        --worker ones; never the database URL, which the worker reads from its standard input."""
        admin = ([] if self.admin_port is None else
                 ["--worker-admin-family", str(int(self.admin_port.addressFamily))])
        return [sys.executable, "-m", "attolytics.worker", "--worker", str(number),
                "--worker-family", str(int(self.port.addressFamily)), "--worker-notify-fd", str(NOTIFY_FD),
                *admin, *self.worker_args]

    def worker_ready(self, worker: _Worker) -> None:
        """A worker serves; once all of them do, systemd hears READY=1."""
        if not self._announced and len(self.workers) == self.count and all(w.ready for w in self.workers.values()):
            self._announced = True
            log.info("all {count} workers serve", count=self.count)
            self.notify("READY=1")

    def worker_ended(self, worker: _Worker, reason) -> None:
        """A worker exited: expected while stopping; else started again, unless it exited with
        status 1, which a worker does only when its start-up cannot succeed."""
        multiprocess.mark_process_dead(worker.pid, self.metrics_dir)
        if self.stopping:
            return
        if getattr(reason, "exitCode", None) == 1:  # a start-up that cannot succeed: it said why
            self.on_fatal(f"worker {worker.number} could not start (exit status 1)")
            return
        lived = self.reactor.seconds() - worker.started
        self._delay = FIRST_RESTART_DELAY if lived >= SETTLED_SECONDS else min(self._delay * 2, MAX_RESTART_DELAY)
        log.warn("worker {number} (pid {pid}) ended: {reason}; starting it again in {delay:g} s",
                 number=worker.number, pid=worker.pid, reason=str(reason), delay=self._delay)
        deferLater(self.reactor, self._delay, self._spawn, worker.number)

    def reconfigure(self, configuration: Configuration) -> Deferred:
        """Pass SIGHUP on to every worker, which reads the file again; fires once each has
        reloaded (or refused). Before the workers run, they start with the file as it is."""
        return DeferredList([self._reload(worker) for worker in list(self.workers.values())])

    def _reload(self, worker: _Worker) -> Deferred:
        """SIGHUP to `worker` once it serves (before, SIGHUP would end it: its handler is set as
        its reactor starts); a Deferred that fires once it has reloaded, or ended."""
        if worker.ended.called:  # started again later, with the file as it is then
            return succeed(None)
        if not worker.ready:
            return worker.next_ready().addCallback(lambda _: self._reload(worker))
        waiting = worker.next_ready()
        worker.signal("HUP")
        return waiting

    def stopService(self):
        super().stopService()
        self.stopping = True
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        # This process's copy of the socket is closed first, so that the socket stops taking
        # connections once the workers close theirs as their stop begins: held open here, it
        # would queue connections that no worker accepts, lost unanswered at the exit (where a
        # closed port sends a proxy on to another instance). Closed, not shut down: a shutdown
        # would end the socket under the workers still accepting (EINVAL in their accept()).
        for port in (self.port, self.admin_port):
            if port is not None:
                await close_without_shutdown(port)
        workers = [w for w in self.workers.values() if not w.ended.called]
        for worker in workers:
            worker.signal("TERM")
        ended = DeferredList([w.ended for w in workers])
        # Each worker keeps its own deadline; past it and a grace, it is killed.
        if not await self.shutdown.within(ended, extra=KILL_GRACE_SECONDS):
            for worker in workers:
                log.warn("worker {number} (pid {pid}) did not stop in time; killing it",
                         number=worker.number, pid=worker.pid)
                worker.signal("KILL")
            await ended
        if self.metrics_dir is not None:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)


async def _listening(endpoint, name: str):
    """The port `endpoint` listens on; an error naming it (`name`) when it cannot."""
    try:
        return await endpoint.listen(Factory())
    except Exception as e:
        raise OSError(f"cannot listen on {name}: {e}") from None


def workers_service(configuration: Configuration, process: Process, endpoint,
                    worker_args: list[str], log_lines, admin_endpoint=None) -> AttolyticsService:
    """The service of the parent process: the embedded PostgreSQL (when no database is
    configured) and the workers, stopped in reverse order; a reload reloads every worker.

    `worker_args` are the options each worker's command line repeats (tap.worker_args());
    `log_lines(text)` writes the workers' whole log lines where this process logs; with
    admin_listen, the workers share the admin port on `admin_endpoint` as they share the public one.
    """
    config = configuration.config
    shutdown = Shutdown(process.reactor, config.shutdown_timeout)
    embedded, locate = database_location(config, shutdown)
    processes = WorkerProcesses(process.reactor, config.workers, endpoint, locate, worker_args, shutdown,
                                process.notify, process.on_fatal, log_lines, admin_endpoint,
                                (f"{config.listen} (listen)", f"{config.admin_listen} (admin_listen)"))
    children = [("embedded", embedded)] if embedded is not None else []
    return AttolyticsService(configuration, process, shutdown, children + [("workers", processes)])
