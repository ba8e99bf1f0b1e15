"""The registry of column types: every PostgreSQL type Attolytics fills from JSON, found by the
catalog's name for it or by the name a configuration gives it."""

import re

from attolytics.storage.column_types.base import ColumnType, Converter, Rejected, describe
from attolytics.storage.column_types.json_values import Json
from attolytics.storage.column_types.moments import Date, Timestamp
from attolytics.storage.column_types.numbers import Boolean, Floating, Integer, Numeric
from attolytics.storage.column_types.strings import Inet, Text, Uuid

__all__ = ["ColumnType", "Converter", "Inet", "Rejected", "TYPE_ALIASES", "Text", "Timestamp", "Uuid",
           "describe", "for_catalog", "for_declaration"]

# Short names a configuration may use, and the PostgreSQL type each one means. `timestamp`
# here has a time zone; the type without one must be spelled out.
TYPE_ALIASES = {
    "bool": "boolean",
    "i32": "integer",
    "i64": "bigint",
    "f32": "real",
    "f64": "double precision",
    "string": "character varying",
    "timestamp": "timestamp with time zone",
}

# PostgreSQL's names for these types (and common aliases), each with its pg_type.typname.
_TYPNAMES = {
    "boolean": "bool",
    "smallint": "int2", "int2": "int2",
    "integer": "int4", "int": "int4", "int4": "int4",
    "bigint": "int8", "int8": "int8",
    "real": "float4", "float4": "float4",
    "double precision": "float8", "float8": "float8", "float": "float8",
    "numeric": "numeric", "decimal": "numeric",
    "text": "text",
    "varchar": "varchar", "character varying": "varchar",
    "char": "bpchar", "character": "bpchar", "bpchar": "bpchar",
    "timestamptz": "timestamptz", "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp",
    "date": "date",
    "json": "json",
    "jsonb": "jsonb",
    "uuid": "uuid",
    "inet": "inet",
}

_TYPE_SYNTAX = re.compile(r"([a-z][a-z0-9 ]*?)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?", re.ASCII)
_NO_TYPMOD = -1
_VARHDRSZ = 4  # a length or precision typmod is stored with this added


def for_catalog(typname: str, typmod: int) -> ColumnType | None:
    """The type of a column as the catalog has it (pg_type.typname, pg_attribute.atttypmod).

    None when Attolytics cannot fill such a column from JSON.
    """
    length = typmod - _VARHDRSZ if typmod >= _VARHDRSZ else None
    if typname == "bool":
        return Boolean()
    if typname in ("int2", "int4", "int8"):
        return Integer(typname)
    if typname in ("float4", "float8"):
        return Floating(typname)
    if typname == "numeric":
        if length is None:
            return Numeric()
        scale = ((length & 0x7FF) ^ 0x400) - 0x400  # an 11-bit signed field since PostgreSQL 15
        return Numeric((length >> 16) & 0xFFFF, scale)
    if typname in ("text", "varchar", "bpchar"):
        return Text(typname, length)
    if typname in ("timestamptz", "timestamp"):
        # A timestamp's typmod is its precision itself (0-6), or -1 for the default of 6.
        return Timestamp(typname == "timestamptz", typmod if typmod >= 0 else None)
    if typname == "date":
        return Date()
    if typname in ("json", "jsonb"):
        return Json(binary=typname == "jsonb")
    if typname == "uuid":
        return Uuid()
    if typname == "inet":
        return Inet()
    return None


def for_declaration(type_name: str) -> ColumnType | None:
    """The type a configuration names: an alias (i64, string, ...) or a PostgreSQL name with its
    length or precision (varchar(20), numeric(10,2), ...). None when it is not a type we can fill.
    """
    type_name = TYPE_ALIASES.get(type_name, type_name)
    match = _TYPE_SYNTAX.fullmatch(" ".join(type_name.lower().split()))
    if not match or match.group(1) not in _TYPNAMES:
        return None
    typname = _TYPNAMES[match.group(1)]
    first, second = (int(group) if group is not None else None for group in match.group(2, 3))
    typmod = _declared_typmod(typname, first, second)
    return None if typmod is None else for_catalog(typname, typmod)


def _declared_typmod(typname: str, first: int | None, second: int | None) -> int | None:
    """The typmod PostgreSQL gives a column declared with these modifiers; None when it refuses
    them (or Attolytics does not take them, as for timestamp(p))."""
    if first is None:
        return _VARHDRSZ + 1 if typname == "bpchar" else _NO_TYPMOD  # char alone is char(1)
    if typname == "numeric":
        scale = second or 0
        if not 1 <= first <= 1000 or scale > first:
            return None
        return ((first << 16) | scale) + _VARHDRSZ
    if typname in ("varchar", "bpchar") and second is None and first >= 1:
        return first + _VARHDRSZ
    return None
