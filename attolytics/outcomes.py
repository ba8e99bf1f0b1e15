"""How a request's events end, as both sides of the service name it: stored (with how many were
duplicates), or refused (an event, the rows), or not written (a busy writer, no database). The
storage side gives them; the HTTP side turns them into answers."""

from typing import NamedTuple


class Stored(NamedTuple):
    """A request's events, committed: how many were inserted, and how many were skipped as
    stored already (None when none of its tables skips duplicates), also by table name."""

    inserted: int
    duplicates: int | None = None
    duplicates_by_table: dict | None = None


class EventRejected(ValueError):
    """An event that cannot be stored; names the event's index and the field at fault."""

    def __init__(self, index: int, field: str | None, message: str, status: int = 400):
        super().__init__(message)
        self.index = index
        self.field = field
        self.message = message
        self.status = status


class RowsRefused(Exception):
    """PostgreSQL refused a request's rows (a constraint, a value out of range); the message
    says what it said."""

    def __init__(self, message: str, unique_violation: bool = False):
        super().__init__(message)
        self.message = message
        # True when a unique index refused the rows.
        self.unique_violation = unique_violation


class WriterBusy(Exception):
    """The writer's queue is full; the client should retry later."""


class DatabaseUnavailable(Exception):
    """No connection to PostgreSQL can serve this request now; the client should retry."""


class Undecided(Exception):
    """The fast path of the checks cannot tell whether events are right: the precise path decides."""
