"""Tables partitioned by time, in pure terms: the intervals a declared table keeps at a given
moment, the names and bounds of their partitions, the statements that make and drop them, and
the range of moments an event may carry.

Moments are UTC. A partition is named <table>_p<YYYYMMDD> after its first day and lives in its
table's schema.
"""

import re
from datetime import datetime, timedelta, timezone

from attolytics.config import PartitionDecl
from attolytics.storage.identifiers import quote_in_schema, quote_table

_MAX_IDENTIFIER_BYTES = 63
_SUFFIX = re.compile(r"_p(\d{4})(\d{2})(\d{2})")
_RANGE = re.compile(r"FOR VALUES FROM \('([^']*)'\) TO \('([^']*)'\)")


def utc(moment: datetime) -> datetime:
    """The moment in UTC; a naive one (a timestamp without time zone) is UTC already."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def interval_start(moment: datetime, interval: str) -> datetime:
    """The first moment of the interval (day, week from Monday, month) that holds `moment`."""
    moment = utc(moment)
    day = datetime(moment.year, moment.month, moment.day, tzinfo=timezone.utc)
    if interval == "day":
        return day
    if interval == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def shifted(start: datetime, interval: str, count: int) -> datetime:
    """The start of the interval `count` intervals after (or before) the one starting at `start`."""
    if interval == "day":
        return start + timedelta(days=count)
    if interval == "week":
        return start + timedelta(weeks=count)
    months = start.year * 12 + start.month - 1 + count
    return start.replace(year=months // 12, month=months % 12 + 1)


def wanted_starts(now: datetime, decl: PartitionDecl) -> list[datetime]:
    """The starts of the intervals whose partitions exist in advance: the current one and `ahead`."""
    current = interval_start(now, decl.interval)
    return [shifted(current, decl.interval, n) for n in range(decl.ahead + 1)]


def kept_range(now: datetime, decl: PartitionDecl) -> tuple[datetime, datetime]:
    """[first, end): from the start of the oldest interval kept to the end of the last made ahead."""
    current = interval_start(now, decl.interval)
    return shifted(current, decl.interval, 1 - decl.keep), shifted(current, decl.interval, decl.ahead + 1)


def partition_name(table: str, start: datetime) -> str:
    """The name of the partition starting at `start`, without its schema."""
    base = table.split(".", 1)[-1]
    suffix = f"_p{start:%Y%m%d}"
    room = _MAX_IDENTIFIER_BYTES - len(suffix)
    return base.encode()[:room].decode(errors="ignore") + suffix


def partition_start(table: str, name: str) -> datetime | None:
    """The first day of a partition of `table` that Attolytics named, or None for another name."""
    base = partition_name(table, datetime(2000, 1, 1))[: -len("_p20000101")]
    match = _SUFFIX.fullmatch(name, len(base)) if name.startswith(base) else None
    if match is None:
        return None
    try:
        return datetime(*map(int, match.groups()), tzinfo=timezone.utc)
    except ValueError:  # not a date: not one of ours
        return None


def create_sql(table: str, schema: str | None, start: datetime, decl: PartitionDecl,
               with_zone: bool) -> str:
    """CREATE TABLE IF NOT EXISTS for the partition of the interval starting at `start`."""
    end = shifted(start, decl.interval, 1)
    return (f"CREATE TABLE IF NOT EXISTS {quote_in_schema(schema, partition_name(table, start))} "
            f"PARTITION OF {quote_table(table)} FOR VALUES FROM ({_bound(start, with_zone)}) "
            f"TO ({_bound(end, with_zone)})")


def drop_sql(schema: str | None, name: str) -> str:
    """DROP TABLE for one partition, with its rows."""
    return f"DROP TABLE IF EXISTS {quote_in_schema(schema, name)}"


def bounds(bound: str) -> tuple[datetime, datetime] | None:
    """[from, to) of a range partition over a timestamp, in UTC, from the bound PostgreSQL writes
    (in the session's time zone); None for another bound (DEFAULT, MINVALUE, a list)."""
    match = _RANGE.fullmatch(bound)
    if match is None:
        return None
    try:
        return utc(datetime.fromisoformat(match[1])), utc(datetime.fromisoformat(match[2]))
    except ValueError:  # infinity, a year BC: not one Attolytics made
        return None


def creations(table: str, schema: str | None, decl: PartitionDecl, with_zone: bool, starts,
              found) -> tuple[list[tuple[str, str]], list[str]]:
    """For the intervals starting at `starts`: (name, CREATE) of those no partition among `found`
    (catalog.Partition) covers yet; and the problems of those an existing partition overlaps
    without covering exactly (the table was partitioned with another interval)."""
    spans = [(partition, bounds(partition.bound)) for partition in found]
    creates, problems = [], []
    for start in sorted(set(starts)):
        end = shifted(start, decl.interval, 1)
        overlapping = [(p, span) for p, span in spans if span is not None and span[0] < end and start < span[1]]
        if any(span == (start, end) for _, span in overlapping):
            continue
        if overlapping:
            partition, (low, high) = overlapping[0]
            problems.append(f"the {decl.interval} from {start:%Y-%m-%d} to {end:%Y-%m-%d} overlaps partition "
                            f"{partition.name} (from {low:%Y-%m-%d %H:%M} to {high:%Y-%m-%d %H:%M} UTC): a "
                            f"partitioned table keeps the interval it was made with")
            continue
        name = partition_name(table, start)
        creates.append((name, create_sql(table, schema, start, decl, with_zone)))
    return creates, problems


def expired(table: str, found, now: datetime, decl: PartitionDecl) -> list:
    """The partitions among `found` (catalog.Partition) that Attolytics made (by their names) and
    that end before the oldest interval kept at `now`, oldest first."""
    first_kept = kept_range(now, decl)[0]
    old = []
    for partition in found:
        span = bounds(partition.bound)
        if partition_start(table, partition.name) is not None and span is not None and span[1] <= first_kept:
            old.append((span[0], partition))
    return [partition for _, partition in sorted(old, key=lambda item: item[0])]


def _bound(moment: datetime, with_zone: bool) -> str:
    return f"'{moment:%Y-%m-%d %H:%M:%S}{'+00' if with_zone else ''}'"


class AcceptedRange:
    """The moments an event of a partitioned table may carry now, on `clock` (IReactorTime): from
    the oldest interval kept to the end of the last one made ahead."""

    def __init__(self, decl: PartitionDecl, clock, with_zone: bool):
        self.decl = decl
        self.clock = clock
        self.with_zone = with_zone
        self._valid_until = float("-inf")
        self._bounds = None

    def bounds(self) -> tuple[datetime, datetime]:
        """[low, high) now: aware UTC moments, or naive ones for a timestamp without time zone."""
        now = self.clock.seconds()
        if now >= self._valid_until:
            moment = datetime.fromtimestamp(now, timezone.utc)
            low, high = kept_range(moment, self.decl)
            # The range moves when the current interval ends.
            current = interval_start(moment, self.decl.interval)
            self._valid_until = shifted(current, self.decl.interval, 1).timestamp()
            self._bounds = (low, high) if self.with_zone else (low.replace(tzinfo=None), high.replace(tzinfo=None))
        return self._bounds

    def refusal(self, value: datetime) -> str | None:
        """Why `value` cannot be stored now, or None when it can."""
        low, high = self.bounds()
        if low <= value < high:
            return None
        return (f"{value.isoformat()} is outside the time range kept: from {low.isoformat()} "
                f"to before {high.isoformat()}")
