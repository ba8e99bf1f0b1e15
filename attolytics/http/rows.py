"""A submission's rows: each table's row builder makes the rows of its events, by the C decoder's
form when the adapter has it and it can decide, else by the precise form, which names the first
event at fault. A fault of the fast form is reported, and the precise form answers."""

from attolytics.http.answers import ApiError
from attolytics.http.submission import Submission
from attolytics.interfaces import TableRows
from attolytics.outcomes import EventRejected, Undecided


def rows_of(submission: Submission, tables, request_values: dict | None, fast_failed) -> list[TableRows]:
    """The rows of every event, by table in first-seen order; raises ApiError naming the first
    event at fault (in the request's order) and its field. `fast_failed(app)` is told of a fault
    of the fast form, with the exception being handled."""
    if submission.decoded is not None:
        try:
            return [TableRows(table, table.decoded_rows(events, request_values))
                    for table, events in submission.decoded]
        except (Undecided, RecursionError):
            pass  # the precise form decides, and says why
        except Exception:
            fast_failed(submission.app)  # a fault of the fast form must not cost a client its events
    groups, first_fault = submission.events_by_table()
    found, fault_table = [], None
    for name, events in groups:
        if first_fault is not None and events[0][0] > first_fault.index:
            continue  # a table whose events all come after the first fault found
        table = tables[name]
        try:
            found.append(TableRows(table, table.rows(events, request_values, submission.routing_key)))
        except EventRejected as e:
            # Each table stops at its first fault; the request's first is the earliest of those.
            if first_fault is None or e.index < first_fault.index:
                first_fault, fault_table = e, name
    if first_fault is not None:
        field = first_fault.field
        if submission.sent_field is not None and fault_table is not None:
            field = submission.sent_field(fault_table, first_fault.index, field)
        raise ApiError(first_fault.status, first_fault.message, event=first_fault.index, field=field)
    return found
