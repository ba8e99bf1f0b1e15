"""How a process of Attolytics meets signals: SIGTERM and SIGINT stop it in order and exit 0,
SIGHUP reloads its configuration, and a fatal start-up problem exits 1."""

import atexit
import os
import signal
import sys

from twisted.internet.error import ReactorNotRunning

from attolytics.logs import logger

log = logger(__name__)


def stop_on_signals(reactor):
    """SIGTERM and SIGINT shut down in order and exit 0, as a deploy expects of a clean stop.

    twistd's own handlers re-raise the signal after shutdown, so the process would die of it.
    These replace them once the reactor runs.
    """

    def handler(signum, frame):
        log.info("received {signal}, shutting down", signal=signal.Signals(signum).name)
        reactor.callFromThread(_stop, reactor)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def reload_on_sighup(reactor, service):
    """SIGHUP (systemctl reload) reloads the configuration file."""

    def reload():
        service.reload().addErrback(lambda failure: log.failure("reload failed", failure=failure))

    def handler(signum, frame):
        log.info("received SIGHUP, reloading the configuration")
        reactor.callFromThread(reload)

    signal.signal(signal.SIGHUP, handler)


def exit_on_fatal(reactor):
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
