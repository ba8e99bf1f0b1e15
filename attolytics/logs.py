"""Attolytics' own log messages, filtered by the verbosity chosen with -v and -q."""

import json
import time

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogPublisher,
)
from zope.interface import implementer

_LEVELS = {-1: LogLevel.warn, 0: LogLevel.info, 1: LogLevel.debug}
_predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
_observer = FilteringLogObserver(globalLogPublisher, [_predicate])


def logger(namespace: str) -> Logger:
    """A Logger for module `namespace` whose messages obey set_verbosity()."""
    return Logger(namespace=namespace, observer=_observer)


_info_logged = True


def set_verbosity(verbosity: int) -> None:
    """0 logs info and up (with one access line per request); below 0 warnings only; above, debug."""
    global _info_logged
    # The predicate keeps its default in the "" namespace; its defaultLogLevel is read only once.
    _predicate.setLogLevelForNamespace("", _LEVELS[max(-1, min(1, verbosity))])
    _info_logged = verbosity >= 0


def info_logged() -> bool:
    """Whether info messages are logged: a caller skips building a line that would be dropped."""
    return _info_logged


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
