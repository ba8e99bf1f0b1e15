"""Booleans and numbers: boolean, smallint, integer, bigint, real, double precision, numeric."""

import struct
from decimal import Context, Decimal
from typing import Annotated, Any

from msgspec import Meta

from attolytics.storage.column_types.base import VARHDRSZ, ColumnType, Rejected, describe, is_number


class Boolean(ColumnType):
    """boolean: true or false."""

    typnames = ("bool",)
    spellings = {"boolean": "bool"}
    typname = "bool"
    ddl = "boolean"

    @staticmethod
    def convert(value: Any) -> bool:
        if value is True or value is False:
            return value
        raise Rejected(f"expected true or false, got {describe(value)}")

    def json_schema(self) -> dict:
        return {"type": "boolean"}

    def decoded_type(self) -> Any:
        return bool


# typname -> (bits, name, OpenAPI format)
_INTEGERS = {
    "int2": (16, "smallint", None), "int4": (32, "integer", "int32"), "int8": (64, "bigint", "int64"),
}


class Integer(ColumnType):
    """smallint, integer, bigint: a JSON integer in range; 42.0 is 42, since nothing is lost."""

    typnames = ("int2", "int4", "int8")
    spellings = {"smallint": "int2", "int2": "int2", "integer": "int4", "int": "int4", "int4": "int4",
                 "bigint": "int8", "int8": "int8"}

    @classmethod
    def of_catalog(cls, typname: str, typmod: int) -> "Integer":
        return cls(typname)

    def __init__(self, typname: str):
        self.typname = typname
        bits, self.ddl, self._format = _INTEGERS[typname]
        self.low, self.high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        self.convert = _integer_converter(self.low, self.high, self.ddl)

    def json_schema(self) -> dict:
        schema = {"type": "integer", "minimum": self.low, "maximum": self.high,
                  "description": "42.0 is 42 and accepted; 1.5, true and \"42\" are refused."}
        if self._format:
            schema["format"] = self._format
        return schema

    def decoded_type(self) -> Any:
        return Annotated[int, Meta(ge=self.low, le=self.high)]


def _integer_converter(low: int, high: int, type_name: str):
    def convert(value: Any) -> int:
        if not is_number(value):
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


# real: the magnitudes a 4-byte float holds (2^128 - 2^103 rounds up to infinity; 2^-150 down to 0).
_REAL_OVERFLOW = float(2**128 - 2**103)
_REAL_UNDERFLOW = 2.0**-150
_DOUBLE_MAX = 1.7976931348623157e308


class Floating(ColumnType):
    """real and double precision: a number the type can hold, neither overflowing nor vanishing."""

    typnames = ("float4", "float8")
    spellings = {"real": "float4", "float4": "float4", "double precision": "float8", "float8": "float8",
                 "float": "float8"}

    @classmethod
    def of_catalog(cls, typname: str, typmod: int) -> "Floating":
        return cls(typname)

    def __init__(self, typname: str):
        self.typname = typname
        single = typname == "float4"
        self.ddl = "real" if single else "double precision"
        self.convert = _floating_converter(self.ddl, single)

    def json_schema(self) -> dict:
        if self.typname == "float8":
            return {"type": "number", "format": "double", "minimum": -_DOUBLE_MAX, "maximum": _DOUBLE_MAX,
                    "description": "Refused: a nonzero number of magnitude 2^-1075 or less, which a "
                                   "double would round to zero."}
        return {
            "type": "number",
            "format": "float",
            "exclusiveMinimum": -_REAL_OVERFLOW,
            "exclusiveMaximum": _REAL_OVERFLOW,
            # Refused: a nonzero number that a 4-byte float would round to zero.
            "not": {"minimum": -_REAL_UNDERFLOW, "maximum": _REAL_UNDERFLOW, "not": {"const": 0}},
            "description": "Stored as the nearest 4-byte float.",
        }


def _floating_converter(type_name: str, single: bool):
    def convert(value: Any) -> float:
        if not is_number(value):
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
# A bound with more digits than this would not survive a schema validator's 8-byte floats.
_MAX_BOUND_DIGITS = 300
_WIDE = Context(prec=_NUMERIC_MAX_SCALE + 1100)


class Numeric(ColumnType):
    """numeric and numeric(p,s): every digit kept; refused when it would need rounding."""

    typnames = ("numeric",)
    spellings = {"numeric": "numeric", "decimal": "numeric"}
    typname = "numeric"

    @classmethod
    def of_catalog(cls, typname: str, typmod: int) -> "Numeric":
        if typmod < VARHDRSZ:
            return cls()
        packed = typmod - VARHDRSZ
        scale = ((packed & 0x7FF) ^ 0x400) - 0x400  # an 11-bit signed field since PostgreSQL 15
        return cls((packed >> 16) & 0xFFFF, scale)

    @classmethod
    def declared_typmod(cls, typname: str, first: int | None, second: int | None) -> int | None:
        if first is None:
            return super().declared_typmod(typname, first, second)
        scale = second or 0
        if not 1 <= first <= 1000 or scale > first:
            return None
        return ((first << 16) | scale) + VARHDRSZ

    def __init__(self, precision: int | None = None, scale: int | None = None):
        self.precision, self.scale = precision, scale
        self.ddl = f"numeric({precision},{scale})" if precision is not None else "numeric"
        self.convert = _numeric_converter(precision, scale, self.ddl)

    def json_schema(self) -> dict:
        precision, scale = self.precision, self.scale
        if precision is None:
            return {"type": "number", "description": "Every digit is kept (PostgreSQL's limits: 131072 "
                                                     "digits before the point, 16383 after)."}
        schema = {"type": "number",
                  "description": f"Every digit is kept; a number that would need rounding to {scale} "
                                 f"digits after the point is refused, and so is one whose magnitude "
                                 f"reaches 1e{precision - scale}."}
        # Bounds and steps an 8-byte float cannot spell (past about 1e±300) are left to the description.
        if abs(precision - scale) <= _MAX_BOUND_DIGITS:
            schema["exclusiveMinimum"] = -(10 ** (precision - scale))
            schema["exclusiveMaximum"] = 10 ** (precision - scale)
        if abs(scale) <= _MAX_BOUND_DIGITS:
            schema["multipleOf"] = float(f"1e-{scale}") if scale > 0 else 10 ** -scale
        return schema


def _numeric_converter(precision: int | None, scale: int | None, type_name: str):
    def convert(value: Any) -> Decimal:
        if not is_number(value):
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
