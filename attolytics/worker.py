"""One worker process of several: the service on the listening socket its parent opened
(supervisor.py starts it as `python -m attolytics.worker`), with its own writer and connections.
It tells its parent, not systemd, when it is ready or reloading, and signs its log lines."""

import argparse
import os
import sys
from dataclasses import replace

from twisted.internet.defer import succeed
from twisted.logger import FileLogObserver, formatEventAsClassicLogText, globalLogBeginner

from attolytics.config import ConfigError, DatabaseLocation, load_config
from attolytics.logs import JsonLinesObserver, set_verbosity
from attolytics.service import attolytics_service
from attolytics.signals import exit_on_fatal, reload_on_sighup, stop_on_signals
from attolytics.twisted_internals import accept_one_at_a_time

# The descriptor the parent hands down the listening socket on.
LISTENING_FD = 3


def arguments(argv=None) -> argparse.Namespace:
    """The command line the parent gives (supervisor.py worker_command())."""
    parser = argparse.ArgumentParser(prog="python -m attolytics.worker")
    parser.add_argument("--config", required=True)
    parser.add_argument("--number", type=int, required=True, help="this worker's number, from 1")
    parser.add_argument("--family", type=int, required=True, help="the listening socket's address family")
    parser.add_argument("--listen", required=True, help="what the parent listens on, for messages")
    parser.add_argument("--db-url", help="the database, when the parent chose it (embedded, --db-url)")
    parser.add_argument("--verbosity", type=int, default=0)
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument("--log-file", default="-", help="where to log: - for standard output")
    return parser.parse_args(argv)


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

    args = arguments(argv)
    set_verbosity(args.verbosity)
    out = sys.stdout if args.log_file == "-" else open(args.log_file, "a", buffering=1)
    observer = (JsonLinesObserver(out) if args.log_format == "json"
                else FileLogObserver(out, lambda event: formatEventAsClassicLogText(event)))
    globalLogBeginner.beginLoggingTo([signed(observer, args.number)], redirectStandardIO=False)

    def overrides(config):
        config = replace(config, listen=args.listen)
        return replace(config, database=DatabaseLocation(url=args.db_url)) if args.db_url else config

    try:
        config = overrides(load_config(args.config))
        service = attolytics_service(config, reactor, exit_on_fatal(reactor),
                                     _AdoptedEndpoint(reactor, LISTENING_FD, args.family), overrides=overrides)
    except ConfigError as e:
        sys.exit(f"attolytics worker {args.number}: {e}")
    reactor.callWhenRunning(stop_on_signals, reactor)
    reactor.callWhenRunning(reload_on_sighup, reactor, service)
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


if __name__ == "__main__":
    main()
