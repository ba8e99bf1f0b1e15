"""JSON documents: json and jsonb, any JSON value with every digit of its numbers."""

import json
from decimal import Decimal
from typing import Any

import orjson

from attolytics.storage.column_types.base import NO_NUL_PATTERN, NOT_NULL, ColumnType, check_text, is_number

_NOTE = "Any JSON value, numbers with all their digits; null means SQL NULL, not a JSON null."
# Where an OpenAPI document keeps the schemas its value schemas refer to.
_SHARED = "#/components/schemas/"


class Json(ColumnType):
    """json and jsonb: any JSON value, sent back as text; jsonb refuses NUL in strings and keys."""

    typnames = ("json", "jsonb")
    spellings = {"json": "json", "jsonb": "jsonb"}

    @classmethod
    def of_catalog(cls, typname: str, typmod: int) -> "Json":
        return cls(binary=typname == "jsonb")

    def __init__(self, binary: bool):
        self.binary = binary
        self.typname = self.ddl = "jsonb" if binary else "json"

        def convert(value: Any) -> str:
            if binary:
                quick = _jsonb_text(value)
                if quick is not None:
                    return quick
            parts: list[str] = []
            _dump_json(value, parts, allow_nul=not binary)
            return "".join(parts)

        self.convert = convert

    def json_schema(self) -> dict:
        if not self.binary:
            return {"not": NOT_NULL, "description": _NOTE}
        return {"$ref": _SHARED + "JsonbValue", "not": NOT_NULL,
                "description": _NOTE + " Refused: the NUL character (\\u0000) in a string or a key, and "
                                       "numbers beyond PostgreSQL's numeric."}

    def shared_schemas(self) -> dict:
        if not self.binary:
            return {}
        # A jsonb value: any JSON without a NUL character in a string or a key, at any depth.
        return {"JsonbValue": {
            "description": "Any JSON value; jsonb refuses the NUL character (\\u0000) in a string or a key.",
            "pattern": NO_NUL_PATTERN,
            "propertyNames": {"pattern": NO_NUL_PATTERN},
            "items": {"$ref": _SHARED + "JsonbValue"},
            "additionalProperties": {"$ref": _SHARED + "JsonbValue"},
        }}


def _jsonb_text(value: Any) -> str | None:
    """`value` as JSON text for a jsonb column, made by orjson, the digits of each Decimal as
    they are; None when the careful path (_dump_json) must decide: a string with a NUL (or with
    text that looks like one escaped) or an unpaired surrogate, an integer past 64 bits. Spacing
    may differ from _dump_json's, which jsonb does not keep."""
    try:
        text = orjson.dumps(value, default=_decimal_fragment)
    except orjson.JSONEncodeError:
        return None
    return None if b"\\u0000" in text else text.decode()


def _decimal_fragment(value: Any):
    """A Decimal as its own digits, for orjson."""
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError


def _dump_json(value: Any, out: list[str], allow_nul: bool) -> None:
    """Serialise parsed JSON back to text, keeping every digit of each Decimal."""
    if isinstance(value, str):
        check_text(value, allow_nul)
        out.append(json.dumps(value, ensure_ascii=False))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif is_number(value):
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
