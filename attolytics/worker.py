"""One worker process of several: the service on the listening socket its parent opened
(supervisor.py starts it as `python -m attolytics.worker`, with the options of tap.Options), with
its own writer and connections. It tells its parent, not systemd, when it is ready or reloading,
and signs its log lines, which it writes to its standard output for its parent to log. It reads
the database URL from its standard input, not from its command line."""

import json
import os
import signal
import sys

from twisted.internet.defer import succeed
from twisted.logger import globalLogBeginner
from twisted.python import usage

from attolytics.supervisor import ADMIN_FD, LISTENING_FD
from attolytics.tap import Options, bootstrap, log_observer
from attolytics.twisted_internals import accept_one_at_a_time


class _AdoptedEndpoint:
    """An endpoint that listens on a socket opened by another process."""

    def __init__(self, reactor, fd: int, family: int):
        self.reactor, self.fd, self.family = reactor, fd, family

    def listen(self, factory):
        """Serve `factory` on the socket; a Deferred of the port, as endpoints give."""
        port = self.reactor.adoptStreamPort(self.fd, self.family, factory)
        # The port holds a copy of the descriptor; the original, left open, would keep the socket
        # taking connections after the port stops listening, until this process exits.
        os.close(self.fd)
        # twisted.web accepts up to 100 waiting connections at once, and more and more while
        # they come: the worker that woke first would take a whole burst (a load balancer's
        # keep-alive connections, opened together) and serve them alone for their lifetime.
        # One at a time, every worker gets its share.
        accept_one_at_a_time(port)
        return succeed(port)


class _FlushedOncePerTurn:
    """Standard output for the log observer, whose flush after every line would make a write
    (and a wake-up of the parent) of each: flushed once per turn of the reactor instead, and at
    exit, as Python flushes standard output."""

    def __init__(self, reactor, out):
        self.reactor, self.out = reactor, out
        self._flushing = None

    def write(self, text: str) -> None:
        """Buffer `text` until the flush."""
        self.out.write(text)

    def flush(self) -> None:
        """Flush once this turn of the reactor is over."""
        if self._flushing is None or not self._flushing.active():
            self._flushing = self.reactor.callLater(0, self.out.flush)


def signed(observer, number: int):
    """An observer that writes each event as `observer` would, marked with the worker's number."""
    def observe(event):
        event = dict(event, worker=number)
        if event.get("log_system", "-") == "-":
            level = getattr(event.get("log_level"), "name", "-")
            event["log_system"] = f"{event.get('log_namespace', '-')}#{level} worker {number}"
        observer(event)

    return observe


def main(argv=None) -> None:
    """Run one worker until its parent stops it."""
    from twisted.internet import reactor

    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        sys.exit(f"attolytics worker: {e}")
    number = options["worker"]
    # The parent writes what the command line must not show (every local user can read it).
    handed = json.loads(sys.stdin.read() or "{}")
    if handed.get("database_url"):
        options["db-url"] = handed["database_url"]
    # The parent writes this process's lines where it logs, between its own.
    # The parent rotates the log at SIGUSR1; sent to the whole group (systemctl kill -s USR1), it
    # would end a worker, which it is the default action of.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    out = _FlushedOncePerTurn(reactor, sys.stdout)
    globalLogBeginner.beginLoggingTo([signed(log_observer(options, out), number)],
                                     redirectStandardIO=False)
    admin_family = options["worker-admin-family"]
    admin = None if admin_family is None else _AdoptedEndpoint(reactor, ADMIN_FD, admin_family)
    service = bootstrap(options, reactor, _AdoptedEndpoint(reactor, LISTENING_FD, options["worker-family"]),
                        admin_endpoint=admin)
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


if __name__ == "__main__":
    main()
