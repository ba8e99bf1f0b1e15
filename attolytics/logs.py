"""Attolytics' own log messages, filtered by the verbosity chosen with -v and -q."""

from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)

_LEVELS = {-1: LogLevel.warn, 0: LogLevel.info, 1: LogLevel.debug}
_predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
_observer = FilteringLogObserver(globalLogPublisher, [_predicate])


def logger(namespace: str) -> Logger:
    """A Logger for module `namespace` whose messages obey set_verbosity()."""
    return Logger(namespace=namespace, observer=_observer)


def set_verbosity(verbosity: int) -> None:
    """0 logs info and up (with one access line per request); below 0 warnings only; above, debug."""
    # The predicate keeps its default in the "" namespace; its defaultLogLevel is read only once.
    _predicate.setLogLevelForNamespace("", _LEVELS[max(-1, min(1, verbosity))])
