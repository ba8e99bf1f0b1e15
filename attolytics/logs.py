"""Attolytics' own log messages: a Logger per module, an observer that keeps them to the
verbosity chosen with -v and -q, and the JSON lines format. Which observer a process logs to is
chosen where it starts (tap.py); importing this module changes nothing."""

import json
import time

from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    Logger,
    LogLevel,
    PredicateResult,
    formatEvent,
)
from zope.interface import implementer

# The package whose messages the verbosity applies to; others (Twisted's) pass as they come.
NAMESPACE = "attolytics"
_LEVELS = {-1: LogLevel.warn, 0: LogLevel.info, 1: LogLevel.debug}
# Info messages shown at -q too, by namespace and the start of their format: what a newcomer
# needs to use the service at all.
SHOWN_WHEN_QUIET = (("attolytics.storage.embedded", "embedded PostgreSQL is running"),)
# Twisted's own info messages shown only at -v: noise, with an object's address in it.
SHOWN_WHEN_VERBOSE = frozenset({"Starting factory {factory!r}", "Stopping factory {factory!r}"})
# A fault that may recur on every request is logged, with its traceback, at most this often.
FAULT_LOG_SECONDS = 60.0


class Seldom:
    """Says when to log a fault that may recur on every request: the first time, then at most
    once every FAULT_LOG_SECONDS of `clock`, with how many were met since."""

    def __init__(self, clock):
        self.clock = clock
        self.met = 0
        self._logged_at: float | None = None

    def due(self) -> int:
        """Count one more fault: how many since the last one logged when this one is to be
        logged, else 0."""
        self.met += 1
        now, last = self.clock.seconds(), self._logged_at
        if last is not None and now - last < FAULT_LOG_SECONDS:
            return 0
        met, self.met, self._logged_at = self.met, 0, now
        return met


def logger(namespace: str) -> Logger:
    """A Logger for module `namespace`; its messages go wherever the process logs."""
    return Logger(namespace=namespace)


def with_verbosity(observer, verbosity: int) -> ILogObserver:
    """`observer`, given Attolytics' messages only at the level -v and -q chose: 0 logs info and up
    (with one access line per request); below 0 warnings only (and where to reach the embedded
    database); above, debug too, and Twisted's factories starting and stopping."""
    predicates = [_OwnLevel(_LEVELS[max(-1, min(1, verbosity))])]
    if verbosity < 1:
        predicates.insert(0, _not_verbose)
    return FilteringLogObserver(observer, predicates)


def _not_verbose(event: dict) -> PredicateResult:
    """Drops Twisted's messages that only -v shows; says nothing of others."""
    return PredicateResult.no if event.get("log_format") in SHOWN_WHEN_VERBOSE else PredicateResult.maybe


@implementer(ILogFilterPredicate)
class _OwnLevel:
    """Drops Attolytics' messages below a level; says nothing of others."""

    def __init__(self, lowest: LogLevel):
        self.lowest = lowest

    def __call__(self, event: dict) -> PredicateResult:
        namespace = event.get("log_namespace") or ""
        if namespace != NAMESPACE and not namespace.startswith(NAMESPACE + "."):
            return PredicateResult.maybe
        level = event.get("log_level")
        if level is None or level >= self.lowest or _shown_when_quiet(namespace, event):
            return PredicateResult.maybe
        return PredicateResult.no


def _shown_when_quiet(namespace: str, event: dict) -> bool:
    format_ = event.get("log_format") or ""
    return any(namespace == shown and format_.startswith(start) for shown, start in SHOWN_WHEN_QUIET)


@implementer(ILogObserver)
class JsonLinesObserver:
    """Writes each log event as one JSON object per line, for log shippers.

    The object has `time` (Unix seconds), `level`, `namespace`, `message`, and the event's own
    fields (those Attolytics logs, such as an access line's app, route, status, events, bytes
    and duration) when they are plain JSON values.
    """

    def __init__(self, file):
        self.file = file

    def __call__(self, event: dict) -> None:
        record = {
            "time": event.get("log_time", time.time()),
            "level": getattr(event.get("log_level"), "name", "info"),
            "namespace": event.get("log_namespace", ""),
            "message": formatEvent(event),
        }
        for key, value in event.items():
            if not key.startswith("log_") and key not in record and _plain(value):
                record[key] = value
        failure = event.get("log_failure")
        if failure is not None:
            record["traceback"] = failure.getTraceback()
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()


def _plain(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))
