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


# A length or precision typmod is stored with this added; -1 is no typmod.
VARHDRSZ = 4
NO_TYPMOD = -1


class ColumnType:
    """One PostgreSQL column type: the names it goes by, the JSON it accepts, how DDL spells it,
    its JSON Schema, and the field the C decoder reads it as. Adding a type is adding one such
    class to the registry (column_types/__init__.py).

    `convert(value)` turns a non-null JSON value into a query parameter or raises Rejected; it is
    a plain function made once per type, since it runs for every value of every event.
    """

    # The pg_type.typname values this class serves, and the names a configuration may give it
    # (each with its typname).
    typnames: tuple[str, ...] = ()
    spellings: dict[str, str] = {}

    typname: str  # pg_type.typname: INSERTs cast each value from text to it
    ddl: str  # as format_type() spells it, which is also valid in CREATE TABLE
    convert: Converter

    @classmethod
    def of_catalog(cls, typname: str, typmod: int) -> "ColumnType":
        """The type of a column as the catalog has it (one of `typnames`, and its typmod)."""
        return cls()

    @classmethod
    def declared_typmod(cls, typname: str, first: int | None, second: int | None) -> int | None:
        """The typmod PostgreSQL gives a column declared with these modifiers (`varchar(20)`:
        first 20); None when it refuses them, or Attolytics does not take them."""
        return NO_TYPMOD if first is None else None

    def json_schema(self) -> dict:
        """The JSON Schema of a non-null value this type accepts, as exact as `convert`."""
        raise NotImplementedError

    def decoded_type(self) -> Any:
        """The msgspec type the C decoder reads a value of this column as: one that takes exactly
        the JSON values `convert` accepts and gives what it returns; None when there is none, and
        the decoder takes the value as the precise parser would and `convert` runs on it."""
        return None

    def decoded_check(self) -> Callable[[list], bool] | None:
        """What confirms a whole batch of values read as decoded_type() are what `convert` would
        return, where the type alone cannot say; None when the type says it all."""
        return None

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
    if not value.isascii() and _SURROGATE.search(value):
        raise Rejected("contains an unpaired UTF-16 surrogate, which is not valid Unicode")
