"""What the service tree is handed, at start-up and at each reload (SIGHUP): the configuration
file read and checked whole, with what it means computed once (the column types of its tables,
the ids the browser client fills). What only a restart can change is kept as it is in force."""

from dataclasses import dataclass, replace
from typing import Callable

from attolytics.config import Config
from attolytics.logs import logger
from attolytics.storage.declarations import DeclaredTypes, declared_types, event_ids

log = logger(__name__)

# What a running service cannot take from a reloaded file: how to read each from a Config, and
# how to put it back into one.
RESTART_ONLY = {
    "listen": (lambda config: config.listen, lambda config, value: replace(config, listen=value)),
    "admin_listen": (lambda config: config.admin_listen,
                     lambda config, value: replace(config, admin_listen=value)),
    "database": (lambda config: config.database, lambda config, value: replace(config, database=value)),
    "writer.connections": (lambda config: config.writer.connections,
                           lambda config, value: replace(config, writer=replace(config.writer, connections=value))),
    "workers": (lambda config: config.workers, lambda config, value: replace(config, workers=value)),
}


@dataclass(frozen=True)
class Configuration:
    """A checked configuration and what it means, as each service of the tree takes it."""

    config: Config
    # Table name -> column name -> column type.
    types: DeclaredTypes
    # App id -> event type -> the uuid column the browser client fills (storage.declarations).
    event_ids: dict

    @classmethod
    def of(cls, config: Config) -> "Configuration":
        """`config` with its meaning; raises ConfigError for a column type nobody knows."""
        types = declared_types(config)
        return cls(config, types, event_ids(config, types))


def read_again(read: Callable[[], Config], in_force: Configuration) -> Configuration:
    """The configuration `read()` gives now (the file with the command line's overrides), with
    what only a restart changes kept as `in_force` has it; raises ConfigError."""
    config = read()
    for key, (value_of, with_value) in RESTART_ONLY.items():
        if value_of(config) != value_of(in_force.config):
            log.warn("{file}: {key} changes only with a restart; it stays as it is", file=config.path, key=key)
            config = with_value(config, value_of(in_force.config))
    return Configuration.of(config)
