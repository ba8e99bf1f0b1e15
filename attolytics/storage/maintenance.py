"""Partition upkeep for the tables partitioned by time: at start-up, after each reload and then
every hour, make the partitions `ahead` asks for and drop those older than `keep`; and make on
the spot the partition that rows about to be written need.

Services sharing a database take turns with an advisory lock: the hourly upkeep skips a turn
that another holds (that one does the same work), rows waiting for a partition wait for it.
"""

from datetime import datetime, timezone

import psycopg2
from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred, DeferredLock, succeed

from attolytics.config import Config
from attolytics.logs import logger
from attolytics.reconfigurable import ReconfigurableService
from attolytics.storage import catalog, partitions
from attolytics.storage.declarations import DeclaredTypes
from attolytics.storage.preparation import SCHEMA_LOCK

log = logger(__name__)

HOUR = 3600.0
# DDL on a partition waits for the locks of the queries reading its table, and inserts queue
# behind it meanwhile: past this wait, the upkeep gives up until its next turn.
LOCK_TIMEOUT = "2s"
# The longest an upkeep may take, lock waits included, before its connection is given up.
UPKEEP_TIMEOUT = 60.0


class PartitionMaintenance(TimerService, ReconfigurableService):
    """Keeps up the partitions of the declared tables partitioned by time, on `clock`'s time,
    through `database` once it is ready."""

    def __init__(self, database, clock, metrics, step: float = HOUR):
        super().__init__(step, self.run)
        self.database = database
        self.clock = clock
        self.metrics = metrics
        self.db = None
        self.lock_timeout = LOCK_TIMEOUT
        # Table name -> (PartitionDecl, whether its column is a timestamp with time zone).
        self.tables: dict = {}
        self._turn = DeferredLock()

    def reconfigure(self, configuration) -> None:
        """Keep up the partitioned tables of `configuration` once the database is ready; a first
        upkeep starts at once, and is not waited for."""
        if self.database.pool is not None:
            self.serve(self.database.pool, configuration.config, configuration.types)

    def serve(self, db, config: Config, types: DeclaredTypes) -> Deferred:
        """Keep up the partitioned tables of `config` through `db` from now on; a first upkeep
        runs at once (its Deferred is returned)."""
        tables = {
            table.name: (table.partition, types[table.name][table.partition.column].with_zone)
            for table in config.tables.values() if table.partition is not None
        }
        for name in set(self.tables) - set(tables):
            for gauge in (self.metrics.partitions, self.metrics.partitions_missing):
                try:
                    gauge.remove(name)
                except KeyError:  # never counted
                    pass
        for name in tables:
            self.metrics.partitions_dropped.labels(name)  # shown as 0 until the first drop
        self.db, self.tables = db, tables
        return self.run()

    def run(self) -> Deferred:
        """Make the partitions wanted now and drop the expired ones; logs, never fails."""
        if self.db is None or not self.tables:
            return succeed(None)
        return self._turn.run(lambda: Deferred.fromCoroutine(self._upkeep_logged()))

    async def _upkeep_logged(self) -> None:
        try:
            await self.db.runInteraction(self._upkeep, self._now(), None, timeout=UPKEEP_TIMEOUT)
        except Exception as e:
            log.warn("partition upkeep failed: {error}; it runs again within the hour",
                     error=str(e).strip() or repr(e))

    def make_room(self, requests: list) -> Deferred:
        """Make the partitions that the rows of `requests` ([[TableRows]], as the writer
        holds them) fall into, waiting for another service's upkeep; fails when they cannot be
        made."""
        needed: dict[str, set] = {}
        for batches in requests:
            for table, rows in batches:
                position = table.partition_position
                if position is None or table.name not in self.tables:
                    continue
                interval = self.tables[table.name][0].interval
                needed.setdefault(table.name, set()).update(
                    partitions.interval_start(row[position], interval)
                    for row in rows if isinstance(row[position], datetime))
        if self.db is None or not needed:
            return succeed(None)
        return self._turn.run(self.db.runInteraction, self._upkeep, self._now(), needed,
                              timeout=UPKEEP_TIMEOUT)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), timezone.utc)

    def _upkeep(self, cursor, now: datetime, needed: dict | None) -> Deferred:
        """In one transaction: with `needed` (table -> interval starts), make those partitions;
        without, make the wanted ones and drop the expired ones of every table."""
        async def run():
            if needed is not None:
                await cursor.execute("SELECT true FROM pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            else:
                await cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            ours = cursor.fetchone()[0]
            await cursor.execute("SELECT set_config('lock_timeout', %s, true)", (self.lock_timeout,))
            for name, (decl, with_zone) in self.tables.items():
                if needed is not None and name not in needed:
                    continue
                found = await catalog.partitions(_Queries(cursor), name)
                if ours and await self._change(cursor, name, decl, with_zone, found, now, needed):
                    found = await catalog.partitions(_Queries(cursor), name)
                self.metrics.partitions.labels(name).set(len(found.found))
                present = {partition.name for partition in found.found}
                missing = [start for start in partitions.wanted_starts(now, decl)
                           if partitions.partition_name(name, start) not in present]
                self.metrics.partitions_missing.labels(name).set(len(missing))
            if not ours:
                log.debug("partition upkeep skipped: another service holds the lock")

        return Deferred.fromCoroutine(run())

    async def _change(self, cursor, table: str, decl, with_zone: bool, found, now: datetime,
                      needed: dict | None) -> bool:
        """Create and drop one table's partitions within a savepoint; whether any was made or dropped.
        A partition that cannot be made, or a statement PostgreSQL refuses, undoes this table's
        changes and is logged; and raised when rows are waiting for the partition."""
        if needed is not None:
            starts, expired = needed[table], []
        else:
            starts = partitions.wanted_starts(now, decl)
            expired = partitions.expired(table, found.found, now, decl)
        creates, problems = partitions.creations(table, found.schema, decl, with_zone, starts, found.found)
        if problems:
            log.error("partitions of {table}: {problems}", table=table, problems="; ".join(problems))
            if needed is not None:
                raise PartitionProblem(f"table {table!r}: {problems[0]}")
        drops = [(p.name, partitions.drop_sql(p.schema, p.name)) for p in expired]
        if not creates and not drops:
            return False
        await cursor.execute("SAVEPOINT attolytics_partitions")
        try:
            for _, sql in creates + drops:
                await cursor.execute(sql)
        except psycopg2.Error as e:
            if e.pgcode is None:
                raise
            await cursor.execute("ROLLBACK TO SAVEPOINT attolytics_partitions")
            log.error("partitions of {table} unchanged: {sql} failed: {error}", table=table, sql=sql,
                      error=str(e).strip())
            if needed is not None:
                raise
            return False
        for name, sql in creates:
            log.info("created partition {partition} of {table}: {sql}", partition=name, table=table, sql=sql)
        for name, sql in drops:
            log.info("dropped partition {partition} of {table}: {sql}", partition=name, table=table, sql=sql)
        if drops:
            self.metrics.partitions_dropped.labels(table).inc(len(drops))
        return True


class PartitionProblem(Exception):
    """A partition that rows need cannot be made: an existing one overlaps it."""


class _Queries:
    """The runQuery of a pool, within the transaction of one cursor, for the catalog reads."""

    def __init__(self, cursor):
        self.cursor = cursor

    def runQuery(self, sql: str, params=None) -> Deferred:
        """Run one query in the transaction; fires with its rows."""
        return self.cursor.execute(sql, params).addCallback(lambda cursor: cursor.fetchall())
