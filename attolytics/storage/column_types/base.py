"""What every column type shares: the refusal of a value, and how a value is described in it."""

import re
from decimal import Decimal
from typing import Any, Callable

# A JSON document is parsed with parse_float=Decimal, so a JSON number arrives as an int or a
# Decimal and keeps every digit the client sent until a column decides what it may hold.
Converter = Callable[[Any], Any]

# A PostgreSQL string holds no NUL; as a pattern, what JSON Schema can say of it.
NO_NUL_PATTERN = "^[^\\x00]*$"
NOT_NULL = {"type": "null"}


class Rejected(ValueError):
    """A JSON value that a column cannot take; the message says why."""


class ColumnType:
    """One PostgreSQL column type: the JSON it accepts, how DDL spells it, and its JSON Schema.

    `convert(value)` turns a non-null JSON value into a query parameter or raises Rejected; it is
    a plain function made once per type, since it runs for every value of every event.
    """

    typname: str  # pg_type.typname: INSERTs cast each value from text to it
    ddl: str  # as format_type() spells it, which is also valid in CREATE TABLE
    convert: Converter

    def json_schema(self) -> dict:
        """The JSON Schema of a non-null value this type accepts, as exact as `convert`."""
        raise NotImplementedError

    def shared_schemas(self) -> dict[str, dict]:
        """Named schemas that json_schema() refers to, for an OpenAPI document's components."""
        return {}

    def __repr__(self) -> str:
        return f"<column type {self.ddl}>"


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


def is_number(value: Any) -> bool:
    """True for a JSON number as the parser makes it (an int or a Decimal), never a bool."""
    return (type(value) is int) or isinstance(value, Decimal)


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(value: str, allow_nul: bool = False) -> None:
    """Refuse a string PostgreSQL cannot store: a NUL (unless allowed), an unpaired surrogate."""
    if not allow_nul and "\x00" in value:
        raise Rejected("must not contain a NUL character (\\u0000)")
    if _SURROGATE.search(value):
        raise Rejected("contains an unpaired UTF-16 surrogate, which is not valid Unicode")
