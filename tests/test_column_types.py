"""The registry of column types: what each PostgreSQL type accepts from JSON, what it sends on,
what a configuration may call it, and its JSON Schema.

JSON numbers reach a converter as int or decimal.Decimal (the API parses with parse_float=Decimal),
booleans as bool. A typmod follows pg_attribute.atttypmod: -1 for none, n + 4 for varchar(n) and
char(n), ((p << 16) | s) + 4 for numeric(p, s).
"""

import json
import re
import struct
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import attolytics
from attolytics.storage.column_types import TYPES, Rejected, for_catalog, for_declaration

pytestmark = pytest.mark.unit

NO_MOD = -1


def converter_for(typname, typmod):
    """The converter of the catalog type (typname, typmod), or None when there is none."""
    column_type = for_catalog(typname, typmod)
    return column_type.convert if column_type is not None else None


UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

INT_RANGES = {
    "int2": (-(2**15), 2**15 - 1),
    "int4": (-(2**31), 2**31 - 1),
    "int8": (-(2**63), 2**63 - 1),
}


def length_mod(n: int) -> int:
    """atttypmod of varchar(n) or char(n)."""
    return n + 4


def numeric_mod(precision: int, scale: int) -> int:
    """atttypmod of numeric(precision, scale); the scale is an 11-bit field (negative since PG 15)."""
    return ((precision << 16) | (scale & 0x7FF)) + 4


def convert(typname, value, typmod=NO_MOD):
    converter = converter_for(typname, typmod)
    assert converter is not None, typname
    return converter(value)


def refuses(typname, value, typmod=NO_MOD) -> bool:
    """True when the converter raises Rejected; any other exception propagates and fails the test."""
    try:
        convert(typname, value, typmod)
    except Rejected:
        return True
    return False


def unix_seconds(moment: datetime) -> Decimal:
    """The exact Unix time of an aware datetime as a Decimal with microseconds."""
    delta = moment - EPOCH
    seconds = delta.days * 86400 + delta.seconds
    return Decimal(seconds) + Decimal(delta.microseconds).scaleb(-6)


valid_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))


# --- Rejected and unknown types -------------------------------------------------------------------


def test_rejected_is_a_value_error():
    assert issubclass(Rejected, ValueError)


@pytest.mark.parametrize("typname", ["point", "int4range", "bytea", "interval", "_int4", "cidr", ""])
def test_unknown_type_has_no_converter(typname):
    assert converter_for(typname, NO_MOD) is None


# --- bool -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [True, False])
def test_bool_accepts_true_and_false(value):
    assert convert("bool", value) is value


@pytest.mark.parametrize("value", [1, 0, Decimal("1"), "true", "false", [], {}])
def test_bool_refuses_anything_but_true_and_false(value):
    with pytest.raises(Rejected):
        convert("bool", value)


# --- int2, int4, int8 -----------------------------------------------------------------------------


@pytest.mark.parametrize("typname", sorted(INT_RANGES))
def test_integer_accepts_both_exact_boundaries(typname):
    low, high = INT_RANGES[typname]
    assert convert(typname, low) == low
    assert convert(typname, high) == high


@pytest.mark.parametrize("typname", sorted(INT_RANGES))
def test_integer_refuses_one_past_each_boundary(typname):
    low, high = INT_RANGES[typname]
    assert refuses(typname, low - 1)
    assert refuses(typname, high + 1)


@pytest.mark.parametrize("typname", sorted(INT_RANGES))
def test_integer_refuses_decimal_one_past_each_boundary(typname):
    low, high = INT_RANGES[typname]
    assert refuses(typname, Decimal(low - 1))
    assert refuses(typname, Decimal(high + 1))


@pytest.mark.parametrize("typname", sorted(INT_RANGES))
@pytest.mark.parametrize("value", [True, False, Decimal("1.5"), Decimal("-0.5"), "42", [], {}])
def test_integer_refuses_non_integers(typname, value):
    assert refuses(typname, value)


@pytest.mark.parametrize("typname", sorted(INT_RANGES))
def test_integer_accepts_integral_decimal_as_int(typname):
    result = convert(typname, Decimal("42.0"))
    assert result == 42
    assert type(result) is int


def test_integer_accepts_integral_decimal_in_exponent_form():
    assert convert("int4", Decimal("4.2E+1")) == 42


def test_integer_accepts_integral_decimal_at_the_boundary():
    assert convert("int2", Decimal("32767.00")) == 32767


def test_integer_refuses_huge_exponent_without_trouble():
    assert refuses("int8", Decimal("1E+100000000"))


@given(st.integers(*INT_RANGES["int4"]))
def test_int4_returns_any_in_range_int_unchanged(value):
    result = convert("int4", value)
    assert result == value
    assert type(result) is int


@given(st.integers(max_value=INT_RANGES["int4"][0] - 1) | st.integers(min_value=INT_RANGES["int4"][1] + 1))
def test_int4_refuses_any_out_of_range_int(value):
    with pytest.raises(Rejected):
        convert("int4", value)


@given(st.integers(*INT_RANGES["int8"]))
def test_int8_returns_any_in_range_integral_decimal_as_that_int(value):
    assert convert("int8", Decimal(value)) == value


# --- float4, float8 -------------------------------------------------------------------------------


@pytest.mark.parametrize("typname", ["float4", "float8"])
@pytest.mark.parametrize("value, expected", [(1, 1.0), (-7, -7.0), (Decimal("1.5"), 1.5), (Decimal("0.1"), 0.1)])
def test_float_accepts_int_and_decimal(typname, value, expected):
    result = convert(typname, value)
    if typname == "float4" and isinstance(value, Decimal):
        # A real gets the client's own digits, for PostgreSQL to round once.
        assert result == str(value)
    else:
        assert result == expected
        assert type(result) is float


@pytest.mark.parametrize("typname", ["float4", "float8"])
@pytest.mark.parametrize("value", [0, Decimal("0.0"), Decimal("-0"), Decimal("0E-500")])
def test_float_accepts_zero(typname, value):
    assert float(convert(typname, value)) == 0.0


@pytest.mark.parametrize("typname", ["float4", "float8"])
@pytest.mark.parametrize("value", [True, False, "1.5", "NaN", [], {}])
def test_float_refuses_bools_and_strings(typname, value):
    assert refuses(typname, value)


@pytest.mark.parametrize(
    "typname, value",
    [
        ("float8", Decimal("1e400")),
        ("float8", Decimal("-1e400")),
        ("float8", 10**400),
        ("float4", Decimal("1e39")),
        ("float4", Decimal("-1e39")),
        ("float4", 10**39),
    ],
)
def test_float_refuses_overflow(typname, value):
    assert refuses(typname, value)


@pytest.mark.parametrize(
    "typname, value",
    [
        ("float8", Decimal("1e-400")),
        ("float8", Decimal("-1e-400")),
        ("float4", Decimal("1e-50")),
        ("float4", Decimal("-1e-50")),
    ],
)
def test_float_refuses_values_that_underflow_to_zero(typname, value):
    assert refuses(typname, value)


def test_float4_accepts_large_and_tiny_values_within_its_range():
    # 1e38 and 1e-38 fit a real: neither overflow nor underflow.
    assert float(convert("float4", Decimal("1e38"))) == 1e38
    assert float(convert("float4", Decimal("1e-38"))) == 1e-38


def test_float8_accepts_the_largest_and_smallest_doubles():
    assert convert("float8", Decimal("1.7976931348623157e308")) == 1.7976931348623157e308
    assert convert("float8", Decimal("5e-324")) == 5e-324


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float8_of_the_decimal_repr_of_a_float_is_that_float(value):
    assert convert("float8", Decimal(repr(value))) == value


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_float4_keeps_every_single_precision_value(value):
    result = convert("float4", Decimal(repr(value)))
    assert struct.unpack("f", struct.pack("f", float(result)))[0] == value


# --- numeric --------------------------------------------------------------------------------------


def test_numeric_unconstrained_keeps_every_digit():
    value = Decimal("3.14159265358979323846264338327950288")
    result = convert("numeric", value)
    assert result == value
    assert str(result) == "3.14159265358979323846264338327950288"


def test_numeric_unconstrained_keeps_trailing_zeros():
    assert str(convert("numeric", Decimal("1.500"))) == "1.500"


def test_numeric_accepts_int():
    assert convert("numeric", 10**30) == Decimal(10**30)


@pytest.mark.parametrize("value", [True, False, "1.5", [], {}])
def test_numeric_refuses_bools_and_strings(value):
    assert refuses("numeric", value)


@pytest.mark.parametrize("value", [Decimal("999.99"), Decimal("1.50"), Decimal("-999.99"), 0, 999])
def test_numeric_5_2_accepts_values_that_fit(value):
    assert convert("numeric", value, numeric_mod(5, 2)) == value


@pytest.mark.parametrize("value", [1000, Decimal("1000"), Decimal("-1000"), Decimal("999.995")])
def test_numeric_5_2_refuses_too_many_integer_digits(value):
    assert refuses("numeric", value, numeric_mod(5, 2))


@pytest.mark.parametrize("value", [Decimal("1.234"), Decimal("0.001")])
def test_numeric_5_2_refuses_more_than_two_fraction_digits(value):
    assert refuses("numeric", value, numeric_mod(5, 2))


def test_numeric_5_2_accepts_extra_fraction_zeros():
    assert convert("numeric", Decimal("1.500"), numeric_mod(5, 2)) == Decimal("1.5")


def test_numeric_with_negative_scale():
    typmod = numeric_mod(3, -2)
    assert convert("numeric", 12300, typmod) == 12300
    assert refuses("numeric", 12345, typmod)
    assert refuses("numeric", 12300000, typmod)


def test_numeric_refuses_more_digits_than_postgresql_allows():
    assert refuses("numeric", Decimal("1e131072"))
    assert refuses("numeric", Decimal("1e-16384"))


# --- text, varchar(n), bpchar(n) -----------------------------------------------------------------

TEXT_TYPES = [("text", NO_MOD), ("varchar", NO_MOD), ("varchar", length_mod(10)), ("bpchar", length_mod(10))]


@pytest.mark.parametrize("typname, typmod", TEXT_TYPES)
def test_text_accepts_strings(typname, typmod):
    assert convert(typname, "héllo ✓", typmod) == "héllo ✓"


@pytest.mark.parametrize("typname, typmod", TEXT_TYPES)
@pytest.mark.parametrize("value", [1, Decimal("1.5"), True, [], {"a": "b"}])
def test_text_refuses_anything_but_strings(typname, typmod, value):
    assert refuses(typname, value, typmod)


@pytest.mark.parametrize("typname, typmod", TEXT_TYPES)
@pytest.mark.parametrize("value", ["\x00", "a\x00b", "end\x00"])
def test_text_refuses_nul(typname, typmod, value):
    assert refuses(typname, value, typmod)


@pytest.mark.parametrize("typname, typmod", TEXT_TYPES)
@pytest.mark.parametrize("value", ["\ud800", "a\udc00b", "\udfff"])
def test_text_refuses_lone_surrogates(typname, typmod, value):
    assert refuses(typname, value, typmod)


def test_text_accepts_characters_beyond_the_bmp():
    assert convert("text", "🎮") == "🎮"


@pytest.mark.parametrize("value", ["", "abc", "日本語"])
def test_varchar_3_accepts_up_to_three_characters(value):
    assert convert("varchar", value, length_mod(3)) == value


@pytest.mark.parametrize("value", ["abcd", "日本語!"])
def test_varchar_3_refuses_four_characters(value):
    assert refuses("varchar", value, length_mod(3))


def test_bpchar_4_counts_characters_like_varchar():
    assert convert("bpchar", "日本語!", length_mod(4)) == "日本語!"
    assert refuses("bpchar", "abcde", length_mod(4))


@given(valid_text)
def test_unlimited_varchar_returns_any_valid_text_unchanged(value):
    assert convert("varchar", value) == value


@given(valid_text)
def test_text_returns_any_valid_text_unchanged(value):
    assert convert("text", value) == value


# --- timestamptz, timestamp -----------------------------------------------------------------------


@pytest.mark.parametrize("typname", ["timestamptz", "timestamp"])
def test_timestamp_of_int_unix_seconds(typname):
    result = convert(typname, 1554130180)
    assert result.replace(tzinfo=UTC) == datetime(2019, 4, 1, 14, 49, 40, tzinfo=UTC)


def test_timestamptz_of_unix_seconds_is_aware_utc():
    assert convert("timestamptz", 0) == EPOCH
    assert convert("timestamptz", 0).utcoffset() == timedelta(0)


def test_timestamptz_keeps_microseconds_of_decimal_seconds():
    result = convert("timestamptz", Decimal("1554130180.123456"))
    assert result == datetime(2019, 4, 1, 14, 49, 40, 123456, tzinfo=UTC)


def test_timestamptz_of_negative_unix_seconds():
    assert convert("timestamptz", Decimal("-1.5")) == datetime(1969, 12, 31, 23, 59, 58, 500000, tzinfo=UTC)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2019-04-01T15:09:40Z", datetime(2019, 4, 1, 15, 9, 40, tzinfo=UTC)),
        ("2019-04-01T15:09:40+02:00", datetime(2019, 4, 1, 13, 9, 40, tzinfo=UTC)),
        ("2019-04-01T15:09:40-05:30", datetime(2019, 4, 1, 20, 39, 40, tzinfo=UTC)),
        ("2019-04-01t15:09:40z", datetime(2019, 4, 1, 15, 9, 40, tzinfo=UTC)),
        ("2019-04-01 15:09:40Z", datetime(2019, 4, 1, 15, 9, 40, tzinfo=UTC)),
        ("2019-04-01T15:09:40.123456Z", datetime(2019, 4, 1, 15, 9, 40, 123456, tzinfo=UTC)),
        ("2019-04-01T15:09:40.5+01:00", datetime(2019, 4, 1, 14, 9, 40, 500000, tzinfo=UTC)),
    ],
)
def test_timestamptz_of_rfc3339_strings(text, expected):
    assert convert("timestamptz", text) == expected


def test_timestamptz_keeps_the_offset_it_was_given():
    result = convert("timestamptz", "2019-04-01T15:09:40+02:00")
    assert result.utcoffset() == timedelta(hours=2)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2019-04-01T15:09:40+16:00", datetime(2019, 3, 31, 23, 9, 40, tzinfo=UTC)),
        ("2019-04-01T15:09:40-23:59", datetime(2019, 4, 2, 15, 8, 40, tzinfo=UTC)),
    ],
)
def test_timestamptz_sends_offsets_postgresql_cannot_read_as_utc(text, expected):
    # PostgreSQL refuses "time zone displacement out of range" from 16 hours on.
    result = convert("timestamptz", text)
    assert result == expected
    assert result.utcoffset() == timedelta(0)


def test_timestamptz_refuses_a_moment_beyond_the_year_9999_in_utc_with_such_an_offset():
    assert refuses("timestamptz", "9999-12-31T23:30:00-16:00")


def test_timestamp_without_zone_is_naive_utc_wall_clock():
    result = convert("timestamp", "2019-04-01T15:09:40+02:00")
    assert result == datetime(2019, 4, 1, 13, 9, 40)
    assert result.tzinfo is None


def test_timestamp_without_zone_of_unix_seconds_is_naive_utc():
    result = convert("timestamp", Decimal("1554130180.123456"))
    assert result == datetime(2019, 4, 1, 14, 49, 40, 123456)
    assert result.tzinfo is None


@pytest.mark.parametrize("typname", ["timestamptz", "timestamp"])
@pytest.mark.parametrize(
    "value",
    [
        "2019-04-01T15:09:40",  # no time zone
        "2019-04-01 15:09:40",
        "2019-04-01",
        "2019-04-01T15:09:40+02",
        "2019-04-01T15:09:40+25:00",
        "2019-02-30T00:00:00Z",
        "2019-04-01T24:00:00Z",
        "yesterday",
        "",
        "1554130180",
        " 2019-04-01T15:09:40Z",
        "2019-04-01T15:09:40Z ",
    ],
)
def test_timestamp_refuses_strings_that_are_not_rfc3339_with_zone(typname, value):
    assert refuses(typname, value)


@pytest.mark.parametrize("typname", ["timestamptz", "timestamp"])
@pytest.mark.parametrize("value", [True, False, [], {}])
def test_timestamp_refuses_bools_and_containers(typname, value):
    assert refuses(typname, value)


@pytest.mark.parametrize("typname", ["timestamptz", "timestamp"])
@pytest.mark.parametrize(
    "value", [253402300800, Decimal("253402300800"), Decimal("1e20"), -(10**20), Decimal("-1e400")]
)
def test_timestamp_refuses_numbers_beyond_year_9999(typname, value):
    assert refuses(typname, value)


@pytest.mark.parametrize("typname", ["timestamptz", "timestamp"])
def test_timestamp_refuses_fraction_that_rounds_into_year_10000(typname):
    assert refuses(typname, Decimal("253402300799.9999999"))


@pytest.mark.parametrize("typname", ["timestamptz", "timestamp"])
def test_timestamp_accepts_the_last_second_of_year_9999(typname):
    result = convert(typname, 253402300799)
    assert result.replace(tzinfo=UTC) == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    "value", ["9999-12-31T23:30:00-01:00", "0001-01-01T00:30:00+01:00"]
)
def test_timestamp_without_zone_refuses_strings_whose_utc_time_leaves_the_datetime_range(value):
    # In UTC these are in the year 10000 and the year 0, which a naive datetime cannot hold.
    assert refuses("timestamp", value)


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 1),
        max_value=datetime(9999, 12, 31, 23, 59, 59, 999999),
        timezones=st.just(UTC),
    )
)
def test_timestamptz_of_unix_seconds_gives_back_the_same_moment(moment):
    assert convert("timestamptz", unix_seconds(moment)) == moment


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 1),
        max_value=datetime(9999, 12, 31, 23, 59, 59, 999999),
        timezones=st.just(UTC),
    )
)
def test_timestamp_of_unix_seconds_gives_back_the_same_naive_utc_time(moment):
    assert convert("timestamp", unix_seconds(moment)) == moment.replace(tzinfo=None)


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.just(UTC),
    )
)
def test_timestamptz_of_rfc3339_text_gives_back_the_same_moment(moment):
    assert convert("timestamptz", moment.isoformat()) == moment


# --- date -----------------------------------------------------------------------------------------


def test_date_accepts_yyyy_mm_dd():
    assert convert("date", "2019-04-01") == date(2019, 4, 1)


def test_date_accepts_leap_day():
    assert convert("date", "2020-02-29") == date(2020, 2, 29)


@pytest.mark.parametrize(
    "value",
    [
        "2019-02-30",
        "2019-02-29",
        "2019-4-1",
        "2019-04-1",
        "20190401",
        "2019-04-01T00:00:00Z",
        "0000-01-01",
        "2019-13-01",
        " 2019-04-01",
        "",
    ],
)
def test_date_refuses_anything_but_a_valid_yyyy_mm_dd(value):
    assert refuses("date", value)


@pytest.mark.parametrize("value", [20190401, Decimal("1554130180"), 0, True, [], {}])
def test_date_refuses_numbers_and_other_values(value):
    assert refuses("date", value)


# --- json, jsonb ----------------------------------------------------------------------------------


def decode(text: str):
    return json.loads(text, parse_float=Decimal)


@pytest.mark.parametrize("typname", ["json", "jsonb"])
@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -12,
        Decimal("1.5"),
        "text",
        [],
        {},
        [1, [2, [3]]],
        {"a": {"b": [None, True, "c"]}, "d": Decimal("-0.25")},
    ],
)
def test_json_serialises_any_json_value(typname, value):
    assert decode(convert(typname, value)) == value


@pytest.mark.parametrize("typname", ["json", "jsonb"])
def test_json_keeps_bools_distinct_from_numbers(typname):
    assert convert(typname, [True, 1, False, 0, None]) == "[true,1,false,0,null]"


@pytest.mark.parametrize("typname", ["json", "jsonb"])
def test_json_keeps_every_digit_of_a_decimal(typname):
    digits = "3.14159265358979323846264338327950288"
    text = convert(typname, {"pi": Decimal(digits), "scaled": Decimal("1.500")})
    assert digits in text
    assert "1.500" in text
    assert decode(text)["pi"] == Decimal(digits)


@pytest.mark.parametrize("typname", ["json", "jsonb"])
def test_json_escapes_quotes_and_control_characters(typname):
    value = {'say "hi"\n': "back\\slash\ttab"}
    assert decode(convert(typname, value)) == value


def test_json_accepts_nul_in_strings():
    assert decode(convert("json", {"a": "x\x00y"})) == {"a": "x\x00y"}


@pytest.mark.parametrize("value", ["x\x00y", {"a": "\x00"}, {"\x00": 1}, [["\x00"]]])
def test_jsonb_refuses_nul_in_strings(value):
    assert refuses("jsonb", value)


def test_jsonb_takes_text_that_only_looks_like_an_escaped_nul_and_integers_past_64_bits():
    value = {"path": "C:\\u0000", "big": 2**80, "small": -(2**70), "digits": Decimal("1e-400")}
    assert decode(convert("jsonb", value)) == value


@pytest.mark.parametrize("typname", ["json", "jsonb"])
@pytest.mark.parametrize("value", ["\ud800", {"a": "x\udc00"}, {"\udbff": 1}, [["\ud800"]]])
def test_json_refuses_lone_surrogates(typname, value):
    assert refuses(typname, value)


def json_values(text_strategy):
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | text_strategy
        | st.decimals(allow_nan=False, allow_infinity=False)
    )
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=5) | st.dictionaries(text_strategy, children, max_size=5),
        max_leaves=25,
    )


@given(json_values(st.text(st.characters(exclude_categories=["Cs"]))))
def test_json_round_trips_any_json_value(value):
    assert decode(convert("json", value)) == value


@given(json_values(valid_text))
def test_jsonb_round_trips_any_json_value_without_nul(value):
    assert decode(convert("jsonb", value)) == value


# --- uuid -----------------------------------------------------------------------------------------

CANONICAL_UUID = "12345678-1234-5678-9abc-def012345678"


@pytest.mark.parametrize(
    "value",
    [
        CANONICAL_UUID,
        CANONICAL_UUID.upper(),
        "{" + CANONICAL_UUID + "}",
        CANONICAL_UUID.replace("-", ""),
    ],
)
def test_uuid_gives_the_canonical_string(value):
    assert convert("uuid", value) == CANONICAL_UUID


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not-a-uuid",
        CANONICAL_UUID[:-1],
        CANONICAL_UUID + "0",
        CANONICAL_UUID[:-1] + "g",
    ],
)
def test_uuid_refuses_non_uuid_strings(value):
    assert refuses("uuid", value)


@pytest.mark.parametrize(
    "value",
    [
        "+2345678123456781234567812345678",  # 31 hex digits after a sign
        "1234567_123456781234567812345678",  # 31 hex digits with an underscore
    ],
)
def test_uuid_refuses_strings_that_python_int_would_parse(value):
    # Such strings are not UUIDs; accepting them silently invents a leading zero digit.
    assert refuses("uuid", value)


@pytest.mark.parametrize("value", [0, 12345678123456781234567812345678, Decimal("1.5"), True, [], {}])
def test_uuid_refuses_numbers_and_other_values(value):
    assert refuses("uuid", value)


@given(st.uuids())
def test_uuid_of_any_uuid_string_is_its_canonical_form(value):
    assert convert("uuid", str(value).upper()) == str(value)
    assert uuid.UUID(convert("uuid", value.hex)) == value


def test_float4_rounds_once_from_the_clients_digits():
    # The nearest real to this is 1.0; rounding through a double first would give 1.0000001.
    assert convert("float4", Decimal("1.000000059604644775390624")) == "1.000000059604644775390624"


def test_rfc3339_fractions_past_the_microsecond_are_rounded_as_postgres_rounds():
    moment = convert("timestamptz", "2019-04-01T15:09:40.9999996Z")
    assert moment == datetime(2019, 4, 1, 15, 9, 41, tzinfo=timezone.utc)
    assert convert("timestamptz", "2019-04-01T15:09:40.1234564Z").microsecond == 123456


@pytest.mark.parametrize("value", [Decimal("1e1000000"), Decimal("-1e1000000")])
def test_timestamp_with_an_enormous_exponent_is_refused_not_an_error(value):
    assert refuses("timestamptz", value)


def test_timestamp_precision_of_the_column_is_respected():
    # timestamptz(0): typmod 0. Whole seconds pass; a fraction would be rounded, so it is refused.
    assert convert("timestamptz", "2019-04-01T15:09:40Z", typmod=0).second == 40
    with pytest.raises(Rejected):
        converter_for("timestamptz", 0)("2019-04-01T15:09:40.7Z")
    assert converter_for("timestamp", 3)(Decimal("1554130180.123")).microsecond == 123000
    with pytest.raises(Rejected):
        converter_for("timestamp", 3)(Decimal("1554130180.1234"))


# --- One class a type: the registry knows each type from its own class alone.

@pytest.mark.parametrize("kind", TYPES, ids=lambda kind: kind.__name__)
def test_each_type_is_found_by_every_name_its_class_gives(kind):
    for spelling, typname in kind.spellings.items():
        assert typname in kind.typnames
        assert isinstance(for_declaration(spelling), kind), spelling
    for typname in kind.typnames:
        assert isinstance(for_catalog(typname, -1), kind), typname


def test_no_module_outside_the_registry_asks_which_class_a_column_type_is():
    """What differs by type (its names, its JSON, the C decoder's field) is asked of the type."""
    package = Path(attolytics.__file__).parent
    found = [f"{path.relative_to(package)}:{number}" for path in package.rglob("*.py")
             if "column_types" not in path.parts
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"isinstance\([^)]*\.type, ", line)]
    assert found == []


# --- Milliseconds where seconds were meant: the refusal says so.

@pytest.mark.parametrize("typname", ["timestamptz", "timestamp"])
@pytest.mark.parametrize("value", [1796599165348, Decimal("1796599165348.5"), -1796599165348])
def test_a_timestamp_in_milliseconds_is_refused_saying_seconds_are_expected(typname, value):
    with pytest.raises(Rejected) as refused:
        convert(typname, value)
    message = str(refused.value)
    assert "looks like milliseconds" in message and "Unix seconds" in message, message
    if value == 1796599165348:
        # The moment it would be in milliseconds, and the number to send instead.
        assert "2026-12-06T23:19:25.348Z" in message and "1796599165.348" in message, message


@pytest.mark.parametrize("value", [10**16, Decimal("1e1000000"), 253402300800 * 1000])
def test_a_timestamp_too_large_even_as_milliseconds_is_only_out_of_range(value):
    with pytest.raises(Rejected) as refused:
        convert("timestamptz", value)
    assert "out of range" in str(refused.value) and "milliseconds" not in str(refused.value)


def test_seconds_near_the_end_of_the_range_are_still_seconds():
    assert convert("timestamptz", 253402300799).year == 9999
