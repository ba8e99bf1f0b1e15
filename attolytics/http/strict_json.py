"""JSON read strictly, as every adapter reads a body: UTF-8 only, numbers keep their digits, no
NaN or Infinity, no duplicate keys; each refusal a 400 that says what is wrong."""

import json
from decimal import Decimal

from attolytics.http.answers import ApiError


def parse_json(raw: bytes):
    """Parse a UTF-8 JSON body strictly: numbers keep their digits, no NaN, no duplicate keys."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, f"body is not valid UTF-8 (byte {e.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise ApiError(400, "body is not valid JSON: nested too deeply") from None
    except ArithmeticError:  # decimal.InvalidOperation: an exponent beyond Decimal's range
        raise ApiError(400, "body holds a number out of any column's range") from None
    except ValueError as e:
        raise ApiError(400, f"body is not valid JSON: {e}") from None


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _unique_object(pairs):
    result = dict(pairs)
    if len(result) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key[:100]!r} in an object")
            seen.add(key)
    return result


# Made once: json.loads with options would make a decoder for every body.
_DECODER = json.JSONDecoder(
    parse_float=Decimal, parse_constant=_reject_constant, object_pairs_hook=_unique_object
)
