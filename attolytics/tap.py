"""The twistd plugin's command line and the factory that builds the service from it."""

import atexit
import os
import signal
import sys
from dataclasses import replace

from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ReactorNotRunning
from twisted.logger import Logger
from twisted.python import usage

from attolytics.config import ConfigError, Database, load_config
from attolytics.service import AttolyticsService

log = Logger()


class Options(usage.Options):
    """`twistd attolytics` options."""

    optParameters = [
        ["config", "c", "attolytics.conf.yaml", "The configuration file (YAML)."],
        ["listen", None, None, "Where to listen, as an endpoint description "
         "(default: the config's listen key, else tcp:8000:interface=127.0.0.1)."],
        ["db-url", None, None, "PostgreSQL connection URL; overrides the config's database."],
    ]


def makeService(options, reactor=None):
    """Load the configuration and build the service; a configuration mistake exits with status 1."""
    if reactor is None:
        from twisted.internet import reactor
    try:
        config = load_config(options["config"])
    except ConfigError as e:
        sys.exit(f"attolytics: {e}")
    if options["listen"]:
        config = replace(config, listen=options["listen"])
    if options["db-url"]:
        config = replace(config, database=Database(url=options["db-url"]))
    try:
        serverFromString(reactor, config.listen)
    except (ValueError, KeyError, TypeError) as e:
        sys.exit(f"attolytics: {config.path}: listen: cannot use {config.listen!r}: {e}")
    reactor.callWhenRunning(_stop_on_signals, reactor)
    return AttolyticsService(config, reactor, on_fatal=_exit_on_fatal(reactor))


def _stop_on_signals(reactor):
    """SIGTERM and SIGINT shut down in order and exit 0, as a deploy expects of a clean stop.

    twistd's own handlers re-raise the signal after shutdown, so the process would die of it.
    These replace them once the reactor runs.
    """

    def handler(signum, frame):
        log.info("received {signal}, shutting down", signal=signal.Signals(signum).name)
        reactor.callFromThread(_stop, reactor)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _exit_on_fatal(reactor):
    """Stop the reactor and make the process exit with status 1 once twistd has cleaned up."""

    def fatal(message: str) -> None:
        log.critical("{message}", message=message)
        atexit.register(_exit_with_failure)
        reactor.callWhenRunning(_stop, reactor)

    return fatal


def _stop(reactor):
    if reactor.running:
        try:
            reactor.stop()
        except ReactorNotRunning:  # already on its way down
            pass


def _exit_with_failure():
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)
