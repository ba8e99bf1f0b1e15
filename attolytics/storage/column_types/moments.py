"""Moments and days: timestamp with and without time zone, and date."""

import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from attolytics.rfc3339 import read_moment
from attolytics.storage.column_types.base import ColumnType, Rejected, describe, is_number

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Unix seconds of 0001-01-01 and 10000-01-01 UTC: Python's datetime, like this check, ends with
# the year 9999, and anything past it is refused before arithmetic.
FIRST_UNIX_SECOND = -62135596800
END_UNIX_SECOND = 253402300800
# RFC 3339 allows UTC offsets up to 23:59; PostgreSQL reads them below 16 hours only.
_MAX_POSTGRES_OFFSET = timedelta(hours=16)


class Timestamp(ColumnType):
    """timestamp [(p)] with or without time zone: Unix seconds or an RFC 3339 string with a zone."""

    typnames = ("timestamptz", "timestamp")
    spellings = {"timestamptz": "timestamptz", "timestamp with time zone": "timestamptz",
                 "timestamp without time zone": "timestamp"}

    @classmethod
    def of_catalog(cls, typname: str, typmod: int) -> "Timestamp":
        # A timestamp's typmod is its precision itself (0-6), or -1 for the default of 6.
        return cls(typname == "timestamptz", typmod if typmod >= 0 else None)

    def __init__(self, with_zone: bool, precision: int | None = None):
        self.typname = "timestamptz" if with_zone else "timestamp"
        self.with_zone, self.precision = with_zone, precision
        zone = "with time zone" if with_zone else "without time zone"
        self.ddl = f"timestamp{'' if precision is None else f'({precision})'} {zone}"
        self.convert = _timestamp_converter(with_zone, precision)

    def json_schema(self) -> dict:
        note = ("Unix seconds, or an RFC 3339 date-time with a time zone (a space instead of the T is "
                "accepted too); fractions of a second are rounded to the microsecond. Refused: a leap "
                "second (:60) and the year 0000.")
        if self.with_zone:
            note += (" With a UTC offset of 16 hours or more, the moment must fall within the years 1 "
                     "to 9999 in UTC.")
        else:
            note += " Stored as the UTC time, which must fall within the years 1 to 9999."
        if self.precision is not None and self.precision < 6:
            note += (f" Refused: a time that, rounded to the microsecond, has more than {self.precision} "
                     f"digits after the second.")
        return {
            "anyOf": [
                {"type": "number", "minimum": FIRST_UNIX_SECOND, "exclusiveMaximum": END_UNIX_SECOND},
                {"type": "string", "format": "date-time"},
            ],
            "description": note,
        }


def _timestamp_converter(with_zone: bool, precision: int | None):
    type_name = "timestamp with time zone" if with_zone else "timestamp"
    if precision is not None:
        type_name = f"{'timestamptz' if with_zone else 'timestamp'}({precision})"
    # Microseconds must be a multiple of this for the column to keep them as sent.
    step = 10 ** (6 - precision) if precision is not None and precision < 6 else 1

    def convert(value: Any) -> datetime:
        # A datetime is the service's own (a Segment message's corrected time), read already.
        moment = value if type(value) is datetime else _moment(value, type_name)
        if step > 1 and moment.microsecond % step:
            raise Rejected(f"has more digits after the second than {type_name} keeps")
        if with_zone and abs(moment.utcoffset()) < _MAX_POSTGRES_OFFSET:
            return moment
        # A timestamp without time zone holds the moment as UTC wall-clock time; so does a
        # timestamptz whose offset PostgreSQL would not read.
        try:
            utc = moment.astimezone(timezone.utc)
        except OverflowError:
            raise Rejected(f"{value!r} is out of range for {type_name} in UTC") from None
        return utc if with_zone else utc.replace(tzinfo=None)

    return convert


def _moment(value: Any, type_name: str) -> datetime:
    """The moment an event's value names, to the microsecond (PostgreSQL's resolution)."""
    if is_number(value):
        # copy_abs: abs() would apply the decimal context and overflow on 1e1000000.
        if (value.copy_abs() if isinstance(value, Decimal) else abs(value)) >= END_UNIX_SECOND:
            raise Rejected(_out_of_range(value, type_name))
        try:
            micros = int((Decimal(value) * 1_000_000).to_integral_value())
            return _EPOCH + timedelta(microseconds=micros)
        except (OverflowError, InvalidOperation):
            raise Rejected(f"{describe(value)} is out of range for {type_name}") from None
    if not isinstance(value, str):
        raise Rejected(f"expected Unix seconds or an RFC 3339 string ({type_name}), got {describe(value)}")
    try:
        moment = read_moment(value)
    except (ValueError, OverflowError):
        raise Rejected(f"{value[:60]!r} is not a valid date-time") from None
    if moment is None:
        raise Rejected(
            "expected Unix seconds or an RFC 3339 date-time with a time zone, such as 2019-04-01T15:09:40Z"
        )
    return moment


def _out_of_range(value, type_name: str) -> str:
    """Why Unix seconds past the years 1 to 9999 are refused: with the moment they would be in
    milliseconds, where they would be a moment within those years (the usual mistake)."""
    message = f"{describe(value)} is out of range for {type_name} as Unix seconds"
    if not FIRST_UNIX_SECOND * 1000 <= value < END_UNIX_SECOND * 1000:
        return message
    seconds = Decimal(value) / 1000
    moment = _EPOCH + timedelta(microseconds=int((seconds * 1_000_000).to_integral_value()))
    spec = "microseconds" if moment.microsecond % 1000 else "milliseconds"
    return (f"{message}; it looks like milliseconds ({moment.isoformat(timespec=spec).replace('+00:00', 'Z')}): "
            f"send seconds, such as {seconds.normalize():f}")


class Date(ColumnType):
    """date: "YYYY-MM-DD"."""

    typnames = ("date",)
    spellings = {"date": "date"}
    typname = "date"
    ddl = "date"

    @staticmethod
    def convert(value: Any) -> date:
        if not isinstance(value, str) or not _DATE.fullmatch(value):
            raise Rejected(f"expected a date as \"YYYY-MM-DD\", got {describe(value)}")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise Rejected(f"{value!r} is not a valid date") from None

    def json_schema(self) -> dict:
        return {"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                "description": "The year 0000 is refused."}
