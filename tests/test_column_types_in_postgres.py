"""Column types against a real PostgreSQL: converted values go into real columns and come back
equal, with the typmods the catalog gives."""

import json
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from attolytics.storage.column_types import for_catalog

pytestmark = pytest.mark.service

UTC = timezone.utc
CANONICAL_UUID = "12345678-1234-5678-9abc-def012345678"


def converter_for(typname, typmod):
    """The converter of the catalog type (typname, typmod)."""
    return for_catalog(typname, typmod).convert


def decode(text: str):
    """JSON text as the service parses it: numbers with every digit."""
    return json.loads(text, parse_float=Decimal)


class TestPostgresRoundTrip:
    """Converted values go into real columns and come back equal; typmods come from the catalog."""

    COLUMNS = {
        "b": "boolean",
        "i2": "smallint",
        "i4": "integer",
        "i8": "bigint",
        "r": "real",
        "d": "double precision",
        "n": "numeric",
        "n52": "numeric(5,2)",
        "t": "text",
        "vc": "varchar(10)",
        "c4": "char(4)",
        "tz": "timestamptz",
        "ts": "timestamp",
        "dt": "date",
        "j": "json",
        "jb": "jsonb",
        "u": "uuid",
    }

    @staticmethod
    def converters(sql, table):
        rows = sql(
            "select a.attname, t.typname, a.atttypmod from pg_attribute a"
            " join pg_type t on t.oid = a.atttypid"
            " where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped",
            (table,),
        )
        return {name: converter_for(typname, typmod) for name, typname, typmod in rows}

    def round_trip(self, sql, sql_type, value, read="v"):
        """Store one converted value in a fresh column of `sql_type` and read `read` back."""
        sql("drop table if exists one_value")
        sql(f"create table one_value (v {sql_type})")
        convert_value = self.converters(sql, "one_value")["v"]
        sql("insert into one_value (v) values (%s)", (convert_value(value),))
        return sql(f"select {read} from one_value")[0][0]

    def test_a_whole_row_of_every_type_comes_back_equal(self, sql):
        columns = ", ".join(f"{name} {sql_type}" for name, sql_type in self.COLUMNS.items())
        sql(f"create table every_type ({columns})")
        converters = self.converters(sql, "every_type")
        event = {
            "b": True,
            "i2": -32768,
            "i4": 2147483647,
            "i8": -9223372036854775808,
            "r": Decimal("1.5"),
            "d": Decimal("0.1"),
            "n": Decimal("3.14159265358979323846264338327950288"),
            "n52": Decimal("999.99"),
            "t": "héllo ✓ 🎮",
            "vc": "日本語日本語日本語!",
            "c4": "ab",
            "tz": Decimal("1554130180.123456"),
            "ts": "2019-04-01T15:09:40.654321+02:00",
            "dt": "2019-04-01",
            "j": {"a": [1, Decimal("2.50"), None, True, "x"]},
            "jb": {"big": Decimal("123456789012345678901234567890.123456789")},
            "u": CANONICAL_UUID.upper(),
        }
        names = list(self.COLUMNS)
        params = [converters[name](event[name]) for name in names]
        placeholders = ", ".join(["%s"] * len(names))
        sql(f"insert into every_type ({', '.join(names)}) values ({placeholders})", params)
        selected = [f"{name}::text" if name in ("j", "jb") else name for name in names]
        row = dict(zip(names, sql(f"select {', '.join(selected)} from every_type")[0]))

        assert row["b"] is True
        assert row["i2"] == -32768
        assert row["i4"] == 2147483647
        assert row["i8"] == -9223372036854775808
        assert row["r"] == 1.5
        assert row["d"] == 0.1
        assert row["n"] == Decimal("3.14159265358979323846264338327950288")
        assert str(row["n"]) == "3.14159265358979323846264338327950288"
        assert row["n52"] == Decimal("999.99")
        assert row["t"] == "héllo ✓ 🎮"
        assert row["vc"] == "日本語日本語日本語!"
        assert row["c4"] == "ab  "  # char(n) pads with spaces
        assert row["tz"] == datetime(2019, 4, 1, 14, 49, 40, 123456, tzinfo=UTC)
        assert row["ts"] == datetime(2019, 4, 1, 13, 9, 40, 654321)
        assert row["dt"] == date(2019, 4, 1)
        assert decode(row["j"]) == {"a": [1, Decimal("2.50"), None, True, "x"]}
        assert decode(row["jb"]) == {"big": Decimal("123456789012345678901234567890.123456789")}
        assert str(row["u"]) == CANONICAL_UUID

    @pytest.mark.parametrize(
        "sql_type, value",
        [
            ("smallint", -32768),
            ("smallint", 32767),
            ("integer", -2147483648),
            ("integer", 2147483647),
            ("bigint", -9223372036854775808),
            ("bigint", 9223372036854775807),
            ("bigint", Decimal("9223372036854775807.0")),
        ],
    )
    def test_integer_boundaries_are_stored(self, sql, sql_type, value):
        assert self.round_trip(sql, sql_type, value) == value

    @pytest.mark.parametrize(
        "value",
        [
            Decimal("3.14159265358979323846264338327950288"),
            Decimal("-0.000000000000000000000000000000000001"),
            Decimal("1.500"),
            10**40,
        ],
    )
    def test_numeric_keeps_every_digit(self, sql, value):
        result = self.round_trip(sql, "numeric", value)
        assert result == value
        assert str(result) == str(Decimal(value))

    @pytest.mark.parametrize("value", [Decimal("999.99"), Decimal("-999.99"), Decimal("1.50"), Decimal("1.500")])
    def test_numeric_5_2_stores_what_the_converter_accepts(self, sql, value):
        assert self.round_trip(sql, "numeric(5,2)", value) == value

    def test_numeric_negative_scale_stores_what_the_converter_accepts(self, sql):
        assert self.round_trip(sql, "numeric(3,-2)", 12300) == 12300

    @pytest.mark.parametrize(
        "value",
        [Decimal("1.7976931348623157e308"), Decimal("-1.7976931348623157e308"), Decimal("5e-324"), Decimal("0.1")],
    )
    def test_double_precision_extremes_are_stored(self, sql, value):
        assert self.round_trip(sql, "double precision", value) == float(value)

    @pytest.mark.parametrize(
        "value, expected",
        [
            (Decimal("1.5"), 1.5),
            (Decimal("0.1"), 0.1),
            (Decimal("3.4028235e38"), 3.4028235e38),
            (Decimal("1e-45"), 1e-45),
            (Decimal("1.17549435e-38"), 1.1754944e-38),
        ],
    )
    def test_real_extremes_are_stored(self, sql, value, expected):
        assert self.round_trip(sql, "real", value) == expected

    def test_text_keeps_characters_beyond_the_bmp(self, sql):
        assert self.round_trip(sql, "text", "日本語 🎮 é") == "日本語 🎮 é"

    def test_varchar_n_counts_characters_as_postgresql_does(self, sql):
        value = "日本語日本語日本語!"
        assert self.round_trip(sql, "varchar(10)", value) == value

    def test_char_n_counts_characters_as_postgresql_does(self, sql):
        assert self.round_trip(sql, "char(4)", "日本語!") == "日本語!"

    @pytest.mark.parametrize(
        "value, expected",
        [
            (Decimal("1554130180.123456"), datetime(2019, 4, 1, 14, 49, 40, 123456, tzinfo=UTC)),
            (Decimal("0.000001"), datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),
            (253402300799, datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
            ("2019-04-01T15:09:40.999999-08:00", datetime(2019, 4, 1, 23, 9, 40, 999999, tzinfo=UTC)),
            ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
        ],
    )
    def test_timestamptz_keeps_microseconds(self, sql, value, expected):
        assert self.round_trip(sql, "timestamptz", value, read="v at time zone 'UTC'") == expected.replace(
            tzinfo=None
        )

    @pytest.mark.parametrize(
        "value, expected",
        [
            (Decimal("1554130180.123456"), datetime(2019, 4, 1, 14, 49, 40, 123456)),
            ("2019-04-01T15:09:40.654321+02:00", datetime(2019, 4, 1, 13, 9, 40, 654321)),
        ],
    )
    def test_timestamp_stores_utc_wall_clock_with_microseconds(self, sql, value, expected):
        assert self.round_trip(sql, "timestamp", value) == expected

    def test_timestamp_does_not_depend_on_the_session_time_zone(self, sql):
        sql("set time zone 'America/New_York'")
        assert self.round_trip(sql, "timestamp", "2019-04-01T15:09:40Z") == datetime(2019, 4, 1, 15, 9, 40)

    def test_date_is_stored(self, sql):
        assert self.round_trip(sql, "date", "2020-02-29") == date(2020, 2, 29)

    @pytest.mark.parametrize("sql_type", ["json", "jsonb"])
    @pytest.mark.parametrize(
        "value",
        [
            {"a": [1, Decimal("2.50"), None, True, False, "x"], "b": {}},
            [Decimal("123456789012345678901234567890.123456789"), Decimal("1E+2"), -0],
            'quote " backslash \\ newline \n tab \t ✓ 🎮',
            None,
        ],
    )
    def test_json_is_equal_after_reading_back(self, sql, sql_type, value):
        assert decode(self.round_trip(sql, sql_type, value, read="v::text")) == value

    def test_json_keeps_nul_escape(self, sql):
        assert decode(self.round_trip(sql, "json", {"a": "x\x00y"}, read="v::text")) == {"a": "x\x00y"}

    def test_uuid_is_stored_canonically(self, sql):
        assert self.round_trip(sql, "uuid", "{" + CANONICAL_UUID.upper() + "}", read="v::text") == CANONICAL_UUID
