"""One converter per PostgreSQL type family: a JSON value in, a query parameter out, or Rejected."""

import json
import re
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Context, Decimal, InvalidOperation
from typing import Any, Callable

# A JSON document is parsed with parse_float=Decimal, so a JSON number arrives as an int or a
# Decimal and keeps every digit the client sent until a column decides what it may hold.
Converter = Callable[[Any], Any]


class Rejected(ValueError):
    """A JSON value that a column cannot take; the message says why."""


# The type names of the upstream configuration, and the PostgreSQL type each one means.
# Upstream's `timestamp` has a time zone; the type without one must be spelled out.
UPSTREAM_TYPES = {
    "bool": "boolean",
    "i32": "integer",
    "i64": "bigint",
    "f32": "real",
    "f64": "double precision",
    "string": "character varying",
    "timestamp": "timestamp with time zone",
}

# PostgreSQL's names (and common aliases) for the types a converter exists for, each mapped to
# the spelling format_type() reports, so a declaration compares equal to the catalog.
_POSTGRES_TYPES = {
    "boolean": "boolean",
    "smallint": "smallint",
    "int2": "smallint",
    "integer": "integer",
    "int": "integer",
    "int4": "integer",
    "bigint": "bigint",
    "int8": "bigint",
    "real": "real",
    "float4": "real",
    "double precision": "double precision",
    "float8": "double precision",
    "float": "double precision",
    "numeric": "numeric",
    "decimal": "numeric",
    "text": "text",
    "varchar": "character varying",
    "character varying": "character varying",
    "char": "character",
    "character": "character",
    "bpchar": "character",
    "timestamptz": "timestamp with time zone",
    "timestamp with time zone": "timestamp with time zone",
    "timestamp without time zone": "timestamp without time zone",
    "date": "date",
    "json": "json",
    "jsonb": "jsonb",
    "uuid": "uuid",
}

_TYPE_SYNTAX = re.compile(r"([a-z][a-z0-9 ]*?)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?", re.ASCII)


def ddl_type_for(type_name: str) -> str | None:
    """The PostgreSQL type, spelled as format_type() spells it, for a configured type name.

    Takes upstream names (i64, string, ...) and PostgreSQL names with their length or
    precision (varchar(20), numeric(10,2), ...). None when it is not a type we can fill.
    """
    if type_name in UPSTREAM_TYPES:
        return UPSTREAM_TYPES[type_name]
    match = _TYPE_SYNTAX.fullmatch(" ".join(type_name.lower().split()))
    if not match or match.group(1) not in _POSTGRES_TYPES:
        return None
    base = _POSTGRES_TYPES[match.group(1)]
    first, second = match.group(2), match.group(3)
    if base == "numeric" and first is not None:
        precision, scale = int(first), int(second or 0)
        if not 1 <= precision <= 1000 or scale > precision:
            return None
        return f"numeric({precision},{scale})"
    if base in ("character varying", "character") and second is None:
        if first is not None and int(first) < 1:
            return None
        if first is None:
            return "character(1)" if base == "character" else base
        return f"{base}({int(first)})"
    return base if first is None else None


def describe(value: Any) -> str:
    """A short, safe description of a JSON value for an error message."""
    if value is None:
        return "null"
    if value is True or value is False:
        return str(value).lower()
    if isinstance(value, (int, Decimal)):
        text = str(value)
        return f"the number {text}" if len(text) <= 40 else "a number with too many digits"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_text(value: str, allow_nul: bool = False) -> None:
    if not allow_nul and "\x00" in value:
        raise Rejected("must not contain a NUL character (\\u0000)")
    if _SURROGATE.search(value):
        raise Rejected("contains an unpaired UTF-16 surrogate, which is not valid Unicode")


def _is_number(value: Any) -> bool:
    return (type(value) is int) or isinstance(value, Decimal)


def _boolean(value: Any) -> bool:
    if value is True or value is False:
        return value
    raise Rejected(f"expected true or false, got {describe(value)}")


def _integer(bits: int, type_name: str) -> Converter:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def convert(value: Any) -> int:
        if not _is_number(value):
            raise Rejected(f"expected an integer ({type_name}), got {describe(value)}")
        if isinstance(value, Decimal):
            # 42.0 and 4.2e1 are exactly 42: accepted, since nothing is lost.
            if value != value.to_integral_value():
                raise Rejected(f"expected an integer ({type_name}), got {describe(value)}")
            if not low <= value <= high:
                raise Rejected(f"{describe(value)} is out of range for {type_name}")
            return int(value)
        if not low <= value <= high:
            raise Rejected(f"{describe(value)} is out of range for {type_name} ({low} to {high})")
        return value

    return convert


def _floating(type_name: str, single: bool) -> Converter:
    import struct

    def convert(value: Any) -> float:
        if not _is_number(value):
            raise Rejected(f"expected a number ({type_name}), got {describe(value)}")
        try:
            result = float(value)
            if single:
                result = struct.unpack("f", struct.pack("f", result))[0]
        except (OverflowError, ValueError):
            raise Rejected(f"{describe(value)} is out of range for {type_name}") from None
        if result in (float("inf"), float("-inf")):
            raise Rejected(f"{describe(value)} is out of range for {type_name}")
        if result == 0 and value != 0:
            raise Rejected(f"{describe(value)} is too close to zero for {type_name}")
        if single and isinstance(value, Decimal):
            # The client's own digits: PostgreSQL rounds them to the nearest real once, where
            # going through a double first could round twice.
            return str(value)
        return result

    return convert


# PostgreSQL's numeric limits: 131072 digits before the point, 16383 after.
_NUMERIC_MAX_ADJUSTED = 131071
_NUMERIC_MAX_SCALE = 16383


def _numeric(precision: int | None, scale: int | None) -> Converter:
    type_name = f"numeric({precision},{scale})" if precision is not None else "numeric"

    def convert(value: Any) -> Decimal:
        if not _is_number(value):
            raise Rejected(f"expected a number ({type_name}), got {describe(value)}")
        number = Decimal(value)
        exponent = number.as_tuple().exponent
        if number and number.adjusted() > _NUMERIC_MAX_ADJUSTED or -exponent > _NUMERIC_MAX_SCALE:
            raise Rejected(f"{describe(value)} is out of range for {type_name}")
        if precision is not None:
            if number and number.adjusted() >= precision - scale:
                raise Rejected(f"{describe(value)} is out of range for {type_name}")
            if -exponent > scale and number != _round(number, scale):
                raise Rejected(
                    f"{describe(value)} has more than {scale} digits after the point "
                    f"allowed by {type_name}"
                )
        return number

    return convert


def _round(number: Decimal, scale: int) -> Decimal:
    # Precision is at most 1000 digits and the range is checked first, so this context suffices.
    return number.quantize(Decimal(1).scaleb(-scale), context=_WIDE)


_WIDE = Context(prec=_NUMERIC_MAX_SCALE + 1100)


def _text(max_length: int | None, type_name: str) -> Converter:
    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise Rejected(f"expected a string ({type_name}), got {describe(value)}")
        _check_text(value)
        if max_length is not None and len(value) > max_length:
            raise Rejected(
                f"a string of {len(value)} characters is longer than the "
                f"{max_length} allowed by {type_name}"
            )
        return value

    return convert


_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Python's datetime ends with the year 9999; anything past it is refused before arithmetic.
_MAX_UNIX_SECONDS = 253402300800
# RFC 3339 allows UTC offsets up to 23:59; PostgreSQL reads them below 16 hours only.
_MAX_POSTGRES_OFFSET = timedelta(hours=16)


def _timestamp(with_zone: bool, precision: int | None = None) -> Converter:
    type_name = "timestamp with time zone" if with_zone else "timestamp"
    if precision is not None:
        type_name = f"{'timestamptz' if with_zone else 'timestamp'}({precision})"
    # Microseconds must be a multiple of this for the column to keep them as sent.
    step = 10 ** (6 - precision) if precision is not None and precision < 6 else 1

    def convert(value: Any) -> datetime:
        moment = _moment(value)
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

    def _moment(value: Any) -> datetime:
        """The moment an event's value names, to the microsecond (PostgreSQL's resolution)."""
        if _is_number(value):
            # copy_abs: abs() would apply the decimal context and overflow on 1e1000000.
            if (value.copy_abs() if isinstance(value, Decimal) else abs(value)) >= _MAX_UNIX_SECONDS:
                raise Rejected(f"{describe(value)} is out of range for {type_name}")
            try:
                micros = int((Decimal(value) * 1_000_000).to_integral_value())
                moment = _EPOCH + timedelta(microseconds=micros)
            except (OverflowError, InvalidOperation):
                raise Rejected(f"{describe(value)} is out of range for {type_name}") from None
        elif isinstance(value, str):
            match = _RFC3339.fullmatch(value)
            if not match:
                raise Rejected(
                    "expected Unix seconds or an RFC 3339 date-time with a time zone, "
                    "such as 2019-04-01T15:09:40Z"
                )
            whole, fraction, zone = match.groups()
            try:
                moment = datetime.fromisoformat(whole.upper() + zone.upper().replace("Z", "+00:00"))
                if fraction:
                    # Rounded to the microsecond, half to even, as PostgreSQL rounds.
                    micros = int((Decimal("0." + fraction) * 1_000_000).to_integral_value())
                    moment += timedelta(microseconds=micros)
            except (ValueError, OverflowError):
                raise Rejected(f"{value[:60]!r} is not a valid date-time") from None
        else:
            raise Rejected(
                f"expected Unix seconds or an RFC 3339 string ({type_name}), got {describe(value)}"
            )
        return moment

    return convert


def _date(value: Any) -> date:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise Rejected(f"expected a date as \"YYYY-MM-DD\", got {describe(value)}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Rejected(f"{value!r} is not a valid date") from None


# The spellings PostgreSQL reads: 32 hex digits, hyphens where the standard form has them or
# none, braces optional. uuid.UUID alone would also take signs and underscores.
_UUID = re.compile(
    r"\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?", re.ASCII | re.IGNORECASE
)


def _uuid(value: Any) -> str:
    if not isinstance(value, str):
        raise Rejected(f"expected a UUID string, got {describe(value)}")
    if not _UUID.fullmatch(value) or value.startswith("{") != value.endswith("}"):
        raise Rejected(f"{value[:60]!r} is not a valid UUID")
    return str(uuid.UUID(value))


def _json(binary: bool) -> Converter:
    def convert(value: Any) -> str:
        parts: list[str] = []
        _dump_json(value, parts, allow_nul=not binary)
        return "".join(parts)

    return convert


def _dump_json(value: Any, out: list[str], allow_nul: bool) -> None:
    """Serialise parsed JSON back to text, keeping every digit of each Decimal."""
    if isinstance(value, str):
        _check_text(value, allow_nul)
        out.append(json.dumps(value, ensure_ascii=False))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif _is_number(value):
        out.append(str(value))
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _dump_json(item, out, allow_nul)
        out.append("]")
    else:
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            _dump_json(key, out, allow_nul)
            out.append(":")
            _dump_json(item, out, allow_nul)
        out.append("}")


def converter_for(typname: str, typmod: int) -> Converter | None:
    """The converter for a column of catalog type `typname` (pg_type.typname) and `typmod`.

    None when Attolytics cannot fill such a column from JSON.
    """
    length = typmod - 4 if typmod >= 4 else None
    if typname == "bool":
        return _boolean
    if typname in ("int2", "int4", "int8"):
        bits = {"int2": 16, "int4": 32, "int8": 64}[typname]
        names = {"int2": "smallint", "int4": "integer", "int8": "bigint"}
        return _integer(bits, names[typname])
    if typname == "float4":
        return _floating("real", single=True)
    if typname == "float8":
        return _floating("double precision", single=False)
    if typname == "numeric":
        if length is None:
            return _numeric(None, None)
        precision = (length >> 16) & 0xFFFF
        scale = ((length & 0x7FF) ^ 0x400) - 0x400  # an 11-bit signed field since PostgreSQL 15
        return _numeric(precision, scale)
    if typname == "text":
        return _text(None, "text")
    if typname == "varchar":
        return _text(length, f"varchar({length})" if length else "varchar")
    if typname == "bpchar":
        return _text(length, f"char({length})" if length else "char")
    # A timestamp's typmod is its precision itself (0-6), or -1 for the default of 6.
    if typname == "timestamptz":
        return _timestamp(with_zone=True, precision=typmod if typmod >= 0 else None)
    if typname == "timestamp":
        return _timestamp(with_zone=False, precision=typmod if typmod >= 0 else None)
    if typname == "date":
        return _date
    if typname in ("json", "jsonb"):
        return _json(binary=typname == "jsonb")
    if typname == "uuid":
        return _uuid
    return None
