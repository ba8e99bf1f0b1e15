"""Strings: text, varchar(n), char(n), uuid, and inet (an IP address)."""

import ipaddress
import re
import uuid
from typing import Annotated, Any

from msgspec import Meta

from attolytics.storage.column_types.base import (
    NO_NUL_PATTERN,
    NO_TYPMOD,
    VARHDRSZ,
    ColumnType,
    Rejected,
    check_text,
    describe,
)

_TEXT_NOTE = ("PostgreSQL cannot store the NUL character (\\u0000), so it is refused; so is an unpaired "
              "UTF-16 surrogate (\\ud800 alone), which JSON can spell but which is not Unicode.")

# typname -> (the name in refusals, the name format_type() gives)
_TEXT_NAMES = {"text": ("text", "text"), "varchar": ("varchar", "character varying"),
               "bpchar": ("char", "character")}


class Text(ColumnType):
    """text, varchar(n), char(n): a string of at most n characters, without NUL."""

    typnames = ("text", "varchar", "bpchar")
    spellings = {"text": "text", "varchar": "varchar", "character varying": "varchar", "char": "bpchar",
                 "character": "bpchar", "bpchar": "bpchar"}

    @classmethod
    def of_catalog(cls, typname: str, typmod: int) -> "Text":
        return cls(typname, typmod - VARHDRSZ if typmod >= VARHDRSZ else None)

    @classmethod
    def declared_typmod(cls, typname: str, first: int | None, second: int | None) -> int | None:
        if first is None:
            return VARHDRSZ + 1 if typname == "bpchar" else NO_TYPMOD  # char alone is char(1)
        if typname in ("varchar", "bpchar") and second is None and first >= 1:
            return first + VARHDRSZ
        return None

    def __init__(self, typname: str, max_length: int | None = None):
        self.typname = typname
        self.max_length = max_length
        short, long = _TEXT_NAMES[typname]
        if max_length is not None:
            short, long = f"{short}({max_length})", f"{long}({max_length})"
        elif typname == "bpchar":
            long = "bpchar"  # char without a length, as format_type() spells it
        self.ddl = long
        self.convert = _text_converter(max_length, short)

    def json_schema(self) -> dict:
        schema = {"type": "string", "pattern": NO_NUL_PATTERN, "description": _TEXT_NOTE}
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
        return schema

    def decoded_type(self) -> Any:
        # The C decoder refuses an unpaired surrogate, and bodies with a NUL never reach it.
        if self.max_length is None:
            return str
        return Annotated[str, Meta(max_length=self.max_length)]


def _text_converter(max_length: int | None, type_name: str):
    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise Rejected(f"expected a string ({type_name}), got {describe(value)}")
        check_text(value)
        if max_length is not None and len(value) > max_length:
            raise Rejected(
                f"a string of {len(value)} characters is longer than the "
                f"{max_length} allowed by {type_name}"
            )
        return value

    return convert


_UUID_DIGITS = "[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}"
# The spellings PostgreSQL reads: 32 hex digits, hyphens where the standard form has them or
# none, braces optional. uuid.UUID alone would also take signs and underscores.
_UUID = re.compile(r"\{?" + _UUID_DIGITS + r"\}?", re.ASCII | re.IGNORECASE)
_UUID_SCHEMA_DIGITS = _UUID_DIGITS.replace("[0-9a-f]", "[0-9a-fA-F]")
# The canonical spelling, which needs no rewriting: the usual case, made cheap.
_CANONICAL_UUID = re.compile("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII).fullmatch
_UUID_CHARACTERS = re.compile("[0-9a-f-]*", re.ASCII).fullmatch
_UUID_HYPHENS = (8, 13, 18, 23)  # where the canonical spelling has its four hyphens


class Uuid(ColumnType):
    """uuid: a UUID string, in any spelling PostgreSQL reads."""

    typnames = ("uuid",)
    spellings = {"uuid": "uuid"}
    typname = "uuid"
    ddl = "uuid"

    @staticmethod
    def convert(value: Any) -> str:
        if type(value) is str and _CANONICAL_UUID(value):
            return value
        if not isinstance(value, str):
            raise Rejected(f"expected a UUID string, got {describe(value)}")
        if not _UUID.fullmatch(value) or value.startswith("{") != value.endswith("}"):
            raise Rejected(f"{value[:60]!r} is not a valid UUID")
        return str(uuid.UUID(value))

    def json_schema(self) -> dict:
        return {"type": "string",
                "pattern": f"^(?:{_UUID_SCHEMA_DIGITS}|\\{{{_UUID_SCHEMA_DIGITS}\\}})$",
                "description": "32 hex digits, hyphens as in the standard form or none, braces optional."}

    def decoded_type(self) -> Any:
        # Any 36 characters; canonical_uuids() then keeps only the canonical spelling.
        return Annotated[str, Meta(min_length=36, max_length=36)]

    def decoded_check(self):
        return canonical_uuids


def canonical_uuids(values: list[str]) -> bool:
    """Whether every one of these 36-character strings is a uuid spelled canonically (what
    Uuid.convert returns as it is); other spellings are rewritten, by `convert`."""
    joined = "".join(values)
    count = len(values)
    return (_UUID_CHARACTERS(joined) is not None and joined.count("-") == 4 * count
            and all(joined[offset::36] == "-" * count for offset in _UUID_HYPHENS))


class Inet(ColumnType):
    """inet: an IPv4 or IPv6 address, with a network prefix or without."""

    typnames = ("inet",)
    spellings = {"inet": "inet"}
    typname = "inet"
    ddl = "inet"

    @staticmethod
    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise Rejected(f"expected an IP address string (inet), got {describe(value)}")
        if "%" in value:  # a zone (fe80::1%eth0), which Python reads and PostgreSQL does not
            raise Rejected(f"{value[:60]!r} is not an IP address PostgreSQL stores (no zone)")
        try:
            return str(ipaddress.ip_interface(value)) if "/" in value else str(ipaddress.ip_address(value))
        except ValueError:
            raise Rejected(f"{value[:60]!r} is not an IP address") from None

    def json_schema(self) -> dict:
        return {"type": "string", "description": "An IPv4 or IPv6 address, optionally with a /prefix."}
