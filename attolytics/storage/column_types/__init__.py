"""The registry of column types: every PostgreSQL type Attolytics fills from JSON, found by the
catalog's name for it or by the name a configuration gives it."""

import re

from attolytics.storage.column_types.base import ColumnType, Converter, Rejected, describe
from attolytics.storage.column_types.json_values import Json
from attolytics.storage.column_types.moments import Date, Timestamp
from attolytics.storage.column_types.numbers import Boolean, Floating, Integer, Numeric
from attolytics.storage.column_types.strings import Inet, Text, Uuid

__all__ = ["TYPES", "ColumnType", "Converter", "Inet", "Rejected", "TYPE_ALIASES", "Text", "Timestamp", "Uuid",
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

# Every type, one class each: adding a type is adding its class here.
TYPES: tuple[type[ColumnType], ...] = (Boolean, Integer, Floating, Numeric, Text, Timestamp, Date, Json, Uuid, Inet)

_BY_TYPNAME = {typname: kind for kind in TYPES for typname in kind.typnames}
# PostgreSQL's names for these types (and common aliases), each with its pg_type.typname.
_TYPNAMES = {name: typname for kind in TYPES for name, typname in kind.spellings.items()}

_TYPE_SYNTAX = re.compile(r"([a-z][a-z0-9 ]*?)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?", re.ASCII)


def for_catalog(typname: str, typmod: int) -> ColumnType | None:
    """The type of a column as the catalog has it (pg_type.typname, pg_attribute.atttypmod).

    None when Attolytics cannot fill such a column from JSON.
    """
    kind = _BY_TYPNAME.get(typname)
    return None if kind is None else kind.of_catalog(typname, typmod)


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
    typmod = _BY_TYPNAME[typname].declared_typmod(typname, first, second)
    return None if typmod is None else for_catalog(typname, typmod)
