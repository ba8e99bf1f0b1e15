"""Reloading the configuration (SIGHUP): read the file again, check it whole, make its tables ready,
then put it in force between two requests. A configuration with any mistake is refused whole and
the one in force stays; what only a restart can change is left as it is."""

from dataclasses import replace

from twisted.internet.defer import DeferredLock

from attolytics import systemd
from attolytics.config import Config, ConfigError, load_config
from attolytics.logs import logger
from attolytics.storage.declarations import declared_types, uuid_ids
from attolytics.storage.preparation import SchemaError

log = logger(__name__)

# What a running service cannot take from a reloaded file: how to read each from a Config, and
# how to put it back into one.
RESTART_ONLY = {
    "listen": (lambda config: config.listen, lambda config, value: replace(config, listen=value)),
    "database": (lambda config: config.database, lambda config, value: replace(config, database=value)),
    "writer.connections": (lambda config: config.writer.connections,
                           lambda config, value: replace(config, writer=replace(config.writer, connections=value))),
    "workers": (lambda config: config.workers, lambda config, value: replace(config, workers=value)),
}


class Reloader:
    """Reloads the configuration in force into the service's parts.

    `overrides(config)` applies what the command line says over the file (--listen, --db-url),
    as it did at start-up.
    """

    def __init__(self, config: Config, reactor, parts, overrides=None):
        self.config = config
        self.reactor = reactor
        # routes, site, writer (WriterService), database (DatabaseService), metrics, shutdown,
        # maintenance (PartitionMaintenance)
        self.parts = parts
        self.overrides = overrides or (lambda config: config)
        self._lock = DeferredLock()
        parts.metrics.config_loaded.set(reactor.seconds())

    def reload(self):
        """Reload now, after any reload under way; a Deferred firing with True when the new
        configuration is in force, False when it was refused."""
        return self._lock.run(self._reload)

    async def _reload(self) -> bool:
        systemd.notify("RELOADING=1")
        path = self.config.path
        log.info("reloading {file}", file=path)
        try:
            config, types = self._read(path)
            prepared = await self.parts.database.prepare(config, types)
        except (ConfigError, SchemaError) as e:
            return self._refused(path, str(e))
        except Exception as e:  # the database could not be reached to make the tables ready
            return self._refused(path, f"{path}: the tables could not be made ready: {str(e).strip() or e!r}")
        self._apply(config, types, prepared)
        self.parts.metrics.config_reloads.labels("applied").inc()
        self.parts.metrics.config_loaded.set(self.reactor.seconds())
        log.info("reloaded {file}", file=path)
        systemd.notify("READY=1")
        return True

    def _read(self, path: str):
        """The file's configuration, with the command line's overrides and what only a restart
        changes kept as in force; and its declared types."""
        config = self.overrides(load_config(path))
        for key, (value_of, with_value) in RESTART_ONLY.items():
            if value_of(config) != value_of(self.config):
                log.warn("{file}: {key} changes only with a restart; it stays as it is", file=path, key=key)
                config = with_value(config, value_of(self.config))
        return config, declared_types(config)

    def _apply(self, config: Config, types, prepared) -> None:
        """Put the configuration in force: from the next request on, apps, keys, origins, event
        types, tables, limits and writer settings are the new ones."""
        parts = self.parts
        parts.routes.configure(config, event_ids(config, uuid_ids(config, types)))
        parts.site.limit(config.max_body_bytes, config.request_timeout)
        parts.writer.configure(config.writer)
        parts.shutdown.seconds = config.shutdown_timeout
        if prepared is not None:
            tables, refused_pool = prepared
            parts.writer.keep_refused(refused_pool)
            parts.routes.serve(tables, parts.writer.writer, parts.writer.refused_writer)
            parts.maintenance.serve(parts.database.pool, config, types)
        self.config = config

    def _refused(self, path: str, problem: str) -> bool:
        log.error("{file}: reload refused, the configuration in force stays: {problem}", file=path,
                  problem=problem)
        self.parts.metrics.config_reloads.labels("refused").inc()
        systemd.notify("READY=1")
        return False


def event_ids(config: Config, ids: dict[str, str]) -> dict:
    """App id -> event type -> the uuid id column of its table, for the browser client."""
    found = {}
    for app in config.apps.values():
        columns = {type_id: ids[table] for type_id, table in app.event_types.items() if table in ids}
        if columns:
            found[app.app_id] = columns
    return found
