"""The only way rows reach PostgreSQL: each request's rows in one transaction, all or none."""

from twisted.internet.defer import Deferred

from attolytics.table import Table

ROWS_PER_STATEMENT = 1000


class Writer:
    """Writes validated rows with multi-row INSERTs."""

    def __init__(self, db):
        self.db = db

    def insert(self, batches: list[tuple[Table, list[tuple]]]) -> Deferred:
        """Insert every (table, rows) pair in one transaction; fires with the row count after COMMIT."""
        return self.db.runInteraction(self._insert_all, batches)

    @staticmethod
    def _insert_all(cursor, batches) -> Deferred:
        async def run():
            count = 0
            for table, rows in batches:
                for start in range(0, len(rows), ROWS_PER_STATEMENT):
                    chunk = rows[start : start + ROWS_PER_STATEMENT]
                    sql, params = table.insert_statement(chunk)
                    await cursor.execute(sql, params)
                    count += len(chunk)
            return count

        return Deferred.fromCoroutine(run())
