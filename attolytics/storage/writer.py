"""The only way rows reach PostgreSQL: rows of concurrent requests gathered into shared transactions.

Each request's rows wait in a queue. Whenever a connection is free, everything queued (up to a
cap) is written in one transaction with one INSERT per table, all rows of a table travelling as
one JSON parameter, and every request in it is answered after the COMMIT. A request's rows
never span two transactions, so each request is all or nothing. When a batch fails because of
one request's data, the batch is written again with a savepoint around each request: only the
guilty ones fail.
"""

from collections import deque
from dataclasses import dataclass, field

import psycopg2
from twisted.internet.defer import Deferred, succeed

from attolytics.config import WriterSettings
from attolytics.interfaces import TableRows
from attolytics.logs import logger
from attolytics.outcomes import DatabaseUnavailable, RowsRefused, WriterBusy
from attolytics.reconfigurable import ReconfigurableService
from attolytics.shutdown import Shutdown
from attolytics.storage.inserts import Batch
from attolytics.storage.pool import QueryTimeout

log = logger(__name__)

# Bytes of request bodies queued, and per transaction: rows can be large, so rows alone do not
# bound memory, nor the size of one statement.
MAX_QUEUED_BYTES = 128 * 1024 * 1024
MAX_BATCH_BYTES = 16 * 1024 * 1024


# SQLSTATE classes of errors caused by the rows themselves: data exceptions, integrity
# violations, program limits (an index row too large), a trigger's RAISE, a view's CHECK OPTION.
_DATA_ERROR_CLASSES = {"22", "23", "54", "P0", "44"}


def _is_missing_partition(error: Exception) -> bool:
    """True when a row fell into no partition of its table (a check violation PostgreSQL raises
    before any constraint of the table is looked at)."""
    diag = getattr(error, "diag", None)
    return (isinstance(error, psycopg2.errors.CheckViolation) and diag is not None
            and (diag.message_primary or "").startswith("no partition of relation"))


def _is_data_error(error: Exception) -> bool:
    """True when `error` belongs to the rows of the statement, not to the connection or server."""
    if isinstance(error, UnicodeEncodeError):  # a character the database's encoding lacks
        return True
    code = getattr(error, "pgcode", None)
    return isinstance(error, psycopg2.Error) and code is not None and code[:2] in _DATA_ERROR_CLASSES


@dataclass
class _Pending:
    """One request's rows, waiting for the transaction that will hold them."""

    batches: list[TableRows]
    rows: int
    size: int  # bytes of the request body the rows came from
    done: Deferred = field(default_factory=Deferred)


class Writer:
    """Queues rows per request and writes them with group commit."""

    def __init__(self, db, reactor, settings: WriterSettings = WriterSettings(), batch_observer=None,
                 make_room=None):
        self.db = db
        self.reactor = reactor
        self.configure(settings)
        # Called with the row count of each transaction, for the metrics.
        self.batch_observer = batch_observer
        # make_room(requests) -> Deferred: makes the partitions the rows of a batch need
        # (storage.maintenance); without it, rows that fall into no partition are refused.
        self.make_room = make_room
        self.queued_rows = 0  # rows accepted and not yet answered, in the queue or in flight
        self.queued_bytes = 0
        self._queue: deque[_Pending] = deque()
        self._waiting_rows = 0  # rows in the queue, not yet in a flush
        self._flushing = 0
        self._in_flight_rows = 0  # rows of the flush started last
        self._delayed = None
        self._idle_waiters: list[Deferred] = []

    def configure(self, settings: WriterSettings) -> None:
        """Write with these settings from now on (the connection count is the pool's)."""
        self.max_queued_rows = settings.max_queued_rows
        self.max_rows_per_flush = settings.max_batch_rows
        self.flush_delay = settings.max_delay_ms / 1000
        # A flush without an answer for this long is given up: its requests get 503 (outcome unknown).
        self.flush_timeout = settings.flush_timeout

    def insert(self, batches: list[TableRows], size: int = 0) -> Deferred:
        """Queue one request's rows, [TableRows]; fires with a Stored after the COMMIT that
        holds them all.

        `size` is the request body's length in bytes, for the memory bound. Fails with
        WriterBusy when the queue is full, RowsRefused when PostgreSQL refuses
        this request's rows, or another error when the database could not be reached.
        """
        rows = sum(len(table_rows) for _, table_rows in batches)
        if self.queued_rows and (
            self.queued_rows + rows > self.max_queued_rows
            or self.queued_bytes + size > MAX_QUEUED_BYTES
        ):
            raise WriterBusy(f"{self.queued_rows} rows are waiting to be written")
        pending = _Pending(batches, rows, size)
        self._queue.append(pending)
        self.queued_rows += rows
        self.queued_bytes += size
        self._waiting_rows += rows
        self._schedule()
        return pending.done

    @property
    def connected(self) -> bool:
        """Whether a database connection is up to write with."""
        return bool(self.db.connected)

    def drain(self) -> Deferred:
        """Fires once every queued row has been written (or has failed)."""
        if not self.queued_rows:
            return succeed(None)
        waiter = Deferred()
        self._idle_waiters.append(waiter)
        return waiter

    def _schedule(self) -> None:
        """Flush now, or with flush_delay, once a delay has passed or a full batch is waiting."""
        if not self.flush_delay or self._waiting_rows >= self.max_rows_per_flush:
            if self._delayed is not None:
                self._delayed.cancel()
                self._delayed = None
            self._start_flushes()
        elif self._delayed is None:
            self._delayed = self.reactor.callLater(self.flush_delay, self._flush_delayed)

    def _flush_delayed(self) -> None:
        self._delayed = None
        self._start_flushes()

    def _start_flushes(self) -> None:
        # One flush per connection: while they run, new requests gather for the next one. A
        # flush beside one in flight starts only once twice as many rows wait as that one
        # carries (or a full batch): sent as they come, small batches would keep every
        # connection busy with less and less each, and a transaction of 100 rows costs
        # PostgreSQL and this process nearly what one of 1,000 does (bench/: 1 worker, 100
        # events a request, 1.0 -> 1.2 times the events a second).
        while self._queue and self._flushing < max(1, self.db.connected):
            if self._flushing and self._waiting_rows < min(2 * self._in_flight_rows, self.max_rows_per_flush):
                break
            taken, rows, size = [], 0, 0
            while self._queue and (not taken or (
                rows + self._queue[0].rows <= self.max_rows_per_flush
                and size + self._queue[0].size <= MAX_BATCH_BYTES
            )):
                pending = self._queue.popleft()
                taken.append(pending)
                rows += pending.rows
                size += pending.size
            self._waiting_rows -= rows
            self._flushing += 1
            self._in_flight_rows = rows
            if self.batch_observer is not None:
                self.batch_observer(rows)
            Deferred.fromCoroutine(self._flush(taken))

    async def _flush(self, requests: list[_Pending]) -> None:
        results = await self._write(requests)
        # Account first, answer second: an answered client may send its next request at once.
        self._flushing -= 1
        self.queued_rows -= sum(p.rows for p in requests)
        self.queued_bytes -= sum(p.size for p in requests)
        for pending, result in zip(requests, results):
            _answer(pending, result)
        if self._queue:
            self._schedule()
        elif not self.queued_rows:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    async def _write(self, requests: list[_Pending], retried: bool = False) -> list:
        """Write the requests; return for each what was stored, or the exception to answer with."""
        try:
            batch = Batch([pending.batches for pending in requests])
            # One round trip: the statements of one query string run as one implicit
            # transaction, committed at its end (the connection is in autocommit mode).
            try:
                await self.db.runOperation(batch.sql, batch.params, timeout=self.flush_timeout)
                return batch.outcomes()
            except psycopg2.errors.UniqueViolation:
                if not batch.skips:
                    raise
            # An event stored already, most likely: the same rows again, skipping those.
            stored = await self.db.runQuery(batch.skipping_sql, batch.params,
                                            timeout=self.flush_timeout)
            return batch.outcomes(stored)
        except Exception as e:
            if self.make_room is not None and not retried and _is_missing_partition(e):
                return await self._write_in_new_partitions(requests)
            if not _is_data_error(e):
                return [_unavailable(e)] * len(requests)
            if len(requests) == 1:
                return [_refused(e)]
            return await self._write_isolated(requests)

    async def _write_in_new_partitions(self, requests: list[_Pending]) -> list:
        """Make the partitions the rows fall into, then write them once more."""
        try:
            await self.make_room([pending.batches for pending in requests])
        except Exception as e:
            log.warn("a partition the events need could not be made: {error}", error=str(e).strip() or repr(e))
            unavailable = DatabaseUnavailable("a partition these events need could not be made yet")
            return [unavailable] * len(requests)
        return await self._write(requests, retried=True)

    async def _write_isolated(self, requests: list[_Pending]) -> list:
        """Write again with a savepoint per request, so only the requests at fault fail."""
        log.debug("a batch of {count} requests failed; writing each on its own", count=len(requests))
        results: list = [None] * len(requests)
        try:
            await self.db.runInteraction(_insert_each, requests, results, timeout=self.flush_timeout)
        except Exception as e:
            return [_unavailable(e)] * len(requests)
        return results


class WriterService(ReconfigurableService):
    """Owns the writers: made once `database` is ready; at shutdown, what is queued is written
    before the pool closes, within the shutdown's deadline.

    `writer` stores events, making the partitions they need through `maintenance`;
    `refused_writer`, given a pool of its own, keeps the events of refused requests in
    transactions of their own, so that they never hold up the others.
    """

    def __init__(self, database, maintenance, reactor, shutdown: Shutdown, metrics):
        self.database = database
        self.maintenance = maintenance
        self.reactor = reactor
        self.shutdown = shutdown
        self.metrics = metrics
        self.settings = None
        self.writer = None
        self.refused_writer = None
        metrics.watch(metrics.writer_queue_rows, self._queued_rows)
        metrics.watch(metrics.writer_queue_limit_rows, self._queue_limit)

    def reconfigure(self, configuration) -> None:
        """Write with the configuration's settings from now on (the connection count stays the
        pool's); once the database is ready, through its pools."""
        self.settings = settings = configuration.config.writer
        for writer in (self.writer, self.refused_writer):
            if writer is not None:
                writer.configure(settings)
        if self.database.pool is None:
            return
        if self.writer is None:
            self.writer = Writer(self.database.pool, self.reactor, settings,
                                 self.metrics.writer_batch_rows.observe, self.maintenance.make_room)
        refused_pool = self.database.refused_pool
        if refused_pool is not None and (self.refused_writer is None or self.refused_writer.db is not refused_pool):
            self.refused_writer = Writer(refused_pool, self.reactor, settings)

    def _queue_limit(self) -> int:
        return self.settings.max_queued_rows if self.settings is not None else 0

    def _queued_rows(self) -> int:
        return self.writer.queued_rows if self.writer is not None else 0

    def stopService(self):
        super().stopService()
        return Deferred.fromCoroutine(self._drain())

    async def _drain(self) -> None:
        if self.writer is not None and not await self.shutdown.within(self.writer.drain()):
            log.warn("stopping with {rows} rows not written; their requests get 503",
                     rows=self.writer.queued_rows)
        if self.refused_writer is not None and not await self.shutdown.within(self.refused_writer.drain()):
            log.warn("stopping with {rows} refused events not kept", rows=self.refused_writer.queued_rows)


def _answer(pending: _Pending, result) -> None:
    if isinstance(result, Exception):
        pending.done.errback(result)
    else:
        pending.done.callback(result)


def _refused(error: Exception) -> RowsRefused:
    """What PostgreSQL said when it refused rows, in words a client can act on."""
    diag = getattr(error, "diag", None)
    message = (diag and diag.message_primary) or str(error).strip()
    if diag is not None and diag.message_detail:
        message += f" ({diag.message_detail})"
    return RowsRefused(f"the database refused the events: {message}",
                       unique_violation=isinstance(error, psycopg2.errors.UniqueViolation))


def _unavailable(error: Exception) -> Exception:
    if isinstance(error, QueryTimeout):  # the statement reached PostgreSQL, which may commit it
        return DatabaseUnavailable(f"{error}; the events may or may not be stored")
    if isinstance(error, DatabaseUnavailable):
        return error
    log.warn("writing a batch failed: {error}", error=str(error).strip() or repr(error))
    # The statement may have reached PostgreSQL: the outcome is unknown, and a retry may
    # store the events twice (at-least-once).
    return DatabaseUnavailable("the database did not confirm the write; the events may or may not be stored")


def _insert_each(cursor, requests: list[_Pending], results: list) -> Deferred:
    """Write each request within a savepoint of its own; set in `results` what became of it."""
    async def run():
        for index, pending in enumerate(requests):
            batch = Batch([pending.batches])
            await cursor.execute("SAVEPOINT attolytics_request")
            try:
                if batch.skips:
                    await cursor.execute(batch.skipping_sql, batch.params)
                    results[index] = batch.outcomes(cursor.fetchall())[0]
                else:
                    await cursor.execute(batch.sql, batch.params)
                    results[index] = batch.outcomes()[0]
            except Exception as e:
                if not _is_data_error(e):
                    raise
                await cursor.execute("ROLLBACK TO SAVEPOINT attolytics_request")
                results[index] = _refused(e)
            else:
                await cursor.execute("RELEASE SAVEPOINT attolytics_request")

    return Deferred.fromCoroutine(run())
