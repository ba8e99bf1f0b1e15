"""Unit tests for partitions by time: the `partition:` key of a declared table, and the intervals,
names, bounds and expiry computed from a given "now"."""

from datetime import datetime, timezone

import pytest

from attolytics.config import ConfigError, PartitionDecl, parse_config
from attolytics.storage import partitions
from attolytics.storage.catalog import Partition
from attolytics.storage.declarations import declared_types

pytestmark = pytest.mark.unit


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


def table_with(partition: str, *columns: str) -> str:
    columns = columns or ("{name: ts, type: timestamp, required: true}",)
    lines = "".join(f"      - {column}\n" for column in ("{name: name, type: string}", *columns))
    return (f"tables:\n  events:\n    partition: {partition}\n    columns:\n{lines}"
            "apps:\n  - app_id: game\n    app_secret_key: s3cret\n"
            "    event_types: [{event_type_id: events}]\n")


def read(text: str):
    config = parse_config(text, "my.yaml")
    declared_types(config)
    return config


def refusal(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        read(text)
    return str(caught.value)


class Clock:
    def __init__(self, now: datetime):
        self.now = now.timestamp()

    def seconds(self) -> float:
        return self.now


# --- the partition key --------------------------------------------------------------------------


def test_a_partition_is_read_with_its_column_interval_ahead_and_keep():
    config = read(table_with("{column: ts, interval: week, ahead: 2, keep: 12}"))
    assert config.tables["events"].partition == PartitionDecl("ts", "week", 2, 12)


def test_a_received_at_column_may_be_the_partition_column():
    config = read(table_with("{column: at, interval: day, ahead: 0, keep: 1}",
                             "{name: at, type: timestamptz, source: received_at}"))
    assert config.tables["events"].partition == PartitionDecl("at", "day", 0, 1)


@pytest.mark.parametrize("partition, message", [
    ("{column: when, interval: day, ahead: 1, keep: 3}",
     "my.yaml: tables.events.partition.column: the table declares no column 'when'"),
    ("{column: name, interval: day, ahead: 1, keep: 3}",
     "my.yaml: tables.events.partition.column: column 'name' must be required (or filled with "
     "received_at): every row needs a partition"),
    ("{column: ts, interval: hour, ahead: 1, keep: 3}",
     "my.yaml: tables.events.partition.interval: expected one of day, week, month, got 'hour'"),
    ("{column: ts, interval: day, ahead: -1, keep: 3}",
     "my.yaml: tables.events.partition.ahead: expected a whole number of intervals, 0 or more, got -1"),
    ("{column: ts, interval: day, ahead: 1, keep: 0}",
     "my.yaml: tables.events.partition.keep: expected a positive integer, got 0"),
    ("{column: ts, interval: day, ahead: 1}",
     "my.yaml: tables.events.partition.keep: missing"),
    ("{column: ts, interval: day, ahead: 1, keep: 3, every: hour}",
     "my.yaml: tables.events.partition.every: unknown key; expected one of ahead, column, interval, keep"),
])
def test_a_wrong_partition_key_is_named(partition, message):
    assert refusal(table_with(partition)).startswith(message)


def test_the_partition_column_must_be_a_timestamp():
    text = table_with("{column: day, interval: day, ahead: 1, keep: 3}",
                      "{name: day, type: date, required: true}")
    assert refusal(text) == ("my.yaml: tables.events.partition.column: a table is partitioned by a "
                             "timestamp column, and 'day' is date")


def test_a_unique_id_cannot_be_told_apart_on_a_table_partitioned_by_received_at():
    text = table_with("{column: at, interval: day, ahead: 1, keep: 3}",
                      "{name: at, type: timestamptz, source: received_at}",
                      "{name: id, type: uuid, unique: true}")
    assert refusal(text).startswith(
        "my.yaml: tables.events.partition.column: a table partitioned by a column filled with "
        "received_at cannot tell a resent event by its 'id'")


# --- intervals and names ------------------------------------------------------------------------


@pytest.mark.parametrize("interval, start", [
    ("day", utc(2026, 11, 30)), ("week", utc(2026, 11, 30)), ("month", utc(2026, 11, 1))])
def test_an_interval_starts_on_a_day_a_monday_or_the_first_of_a_month(interval, start):
    assert partitions.interval_start(utc(2026, 12, 2, 23, 59) if interval == "week"
                                     else utc(2026, 11, 30, 23, 59), interval) == start


def test_a_moment_with_an_offset_belongs_to_its_utc_day():
    moment = datetime.fromisoformat("2026-12-01T01:30:00+03:00")
    assert partitions.interval_start(moment, "day") == utc(2026, 11, 30)


def test_months_shift_across_years_both_ways():
    assert partitions.shifted(utc(2026, 11, 1), "month", 3) == utc(2027, 2, 1)
    assert partitions.shifted(utc(2026, 1, 1), "month", -13) == utc(2024, 12, 1)


def test_the_wanted_partitions_are_the_current_interval_and_those_ahead():
    decl = PartitionDecl("ts", "month", 2, 6)
    assert partitions.wanted_starts(utc(2026, 11, 30, 12), decl) == [
        utc(2026, 11, 1), utc(2026, 12, 1), utc(2027, 1, 1)]


def test_the_kept_range_runs_from_the_oldest_kept_interval_to_the_end_of_the_last_ahead():
    decl = PartitionDecl("ts", "day", 7, 90)
    assert partitions.kept_range(utc(2026, 11, 30, 12), decl) == (utc(2026, 9, 2), utc(2026, 12, 8))


def test_a_partition_is_named_after_its_first_day_within_63_bytes():
    assert partitions.partition_name("analytics.events", utc(2026, 11, 30)) == "events_p20261130"
    long_name = "é" * 40
    name = partitions.partition_name(long_name, utc(2026, 11, 30))
    assert len(name.encode()) <= 63 and name.endswith("_p20261130")
    assert partitions.partition_start(long_name, name) == utc(2026, 11, 30)


def test_only_partitions_named_by_attolytics_are_read_as_such():
    assert partitions.partition_start("events", "events_p20261130") == utc(2026, 11, 30)
    for other in ("events_p2026113", "events_p20261399", "events_2026", "clicks_p20261130",
                  "events_p20261130_old"):
        assert partitions.partition_start("events", other) is None


def test_the_partition_statements_bound_each_interval():
    decl = PartitionDecl("ts", "month", 1, 3)
    assert partitions.create_sql("events", "analytics", utc(2026, 12, 1), decl, True) == (
        'CREATE TABLE IF NOT EXISTS "analytics"."events_p20261201" PARTITION OF "events" '
        "FOR VALUES FROM ('2026-12-01 00:00:00+00') TO ('2027-01-01 00:00:00+00')")
    assert partitions.create_sql("events", None, utc(2026, 12, 1), decl, False).endswith(
        "FROM ('2026-12-01 00:00:00') TO ('2027-01-01 00:00:00')")
    assert partitions.drop_sql("public", "events_p20261201") == 'DROP TABLE IF EXISTS "public"."events_p20261201"'


def day_partition(name: str, start: datetime, end: datetime | None = None, schema: str = "public") -> Partition:
    end = end or partitions.shifted(start, "day", 1)
    return Partition(schema, name, f"FOR VALUES FROM ('{start:%Y-%m-%d %H:%M:%S+00}') TO ('{end:%Y-%m-%d %H:%M:%S+00}')")


def test_bounds_are_read_in_any_time_zone_and_other_bounds_are_not():
    assert partitions.bounds("FOR VALUES FROM ('2026-12-01 01:00:00+01') TO ('2026-12-02 00:00:00')") == (
        utc(2026, 12, 1), utc(2026, 12, 2))
    for other in ("DEFAULT", "FOR VALUES FROM (MINVALUE) TO ('2026-12-01 00:00:00+00')",
                  "FOR VALUES IN ('a')", "FOR VALUES FROM ('infinity') TO ('2026-12-01 00:00:00+00')"):
        assert partitions.bounds(other) is None


def test_partitions_that_end_before_the_oldest_kept_interval_expire_oldest_first():
    decl = PartitionDecl("ts", "day", 1, 3)
    found = [day_partition(f"events_p202611{day}", utc(2026, 11, day)) for day in (27, 26, 28, 29, 30)]
    found += [day_partition("events_archive", utc(2026, 1, 1), utc(2026, 11, 1)),  # not ours: kept
              Partition("public", "events_p20250101", "DEFAULT")]
    # At 2026-11-30 12:00 with keep 3, the days kept are the 28th, 29th and 30th.
    assert [p.name for p in partitions.expired("events", found, utc(2026, 11, 30, 12), decl)] == [
        "events_p20261126", "events_p20261127"]


def test_only_intervals_no_partition_covers_are_created_and_an_overlap_is_a_problem():
    decl = PartitionDecl("ts", "day", 2, 3)
    found = [day_partition("events_p20261130", utc(2026, 11, 30)),
             day_partition("legacy", utc(2026, 12, 2, 12), utc(2026, 12, 3))]
    creates, problems = partitions.creations("events", "public", decl, True,
                                             partitions.wanted_starts(utc(2026, 11, 30, 12), decl), found)
    assert [name for name, _ in creates] == ["events_p20261201"]
    assert problems == ["the day from 2026-12-02 to 2026-12-03 overlaps partition legacy (from 2026-12-02 "
                        "12:00 to 2026-12-03 00:00 UTC): a partitioned table keeps the interval it was made with"]


# --- the range an event may carry ---------------------------------------------------------------


def test_an_event_outside_the_kept_range_is_refused_with_the_range():
    clock = Clock(utc(2026, 11, 30, 12))
    accepted = partitions.AcceptedRange(PartitionDecl("ts", "day", 1, 3), clock, True)
    assert accepted.refusal(utc(2026, 11, 28)) is None
    assert accepted.refusal(utc(2026, 12, 1, 23, 59, 59)) is None
    assert accepted.refusal(utc(2026, 11, 27, 23, 59, 59)) == (
        "2026-11-27T23:59:59+00:00 is outside the time range kept: from 2026-11-28T00:00:00+00:00 "
        "to before 2026-12-02T00:00:00+00:00")
    assert accepted.refusal(utc(2026, 12, 2)) is not None


def test_the_accepted_range_moves_with_the_clock():
    clock = Clock(utc(2026, 11, 30, 23, 59))
    accepted = partitions.AcceptedRange(PartitionDecl("ts", "day", 0, 1), clock, False)
    assert accepted.bounds() == (datetime(2026, 11, 30), datetime(2026, 12, 1))
    clock.now = utc(2026, 12, 1, 0, 0, 1).timestamp()
    assert accepted.bounds() == (datetime(2026, 12, 1), datetime(2026, 12, 2))
    assert accepted.refusal(datetime(2026, 11, 30, 23)) is not None
