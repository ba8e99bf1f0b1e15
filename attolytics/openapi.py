"""The OpenAPI 3.1 description of a running service: its apps, event types and columns, never its keys."""

import re
from typing import Mapping
from urllib.parse import quote

from attolytics import __version__, cors
from attolytics.config import App, Config
from attolytics.table import Column, Table

OPENAPI_VERSION = "3.1.0"
_SCHEMAS = "#/components/schemas/"
_RESPONSES = "#/components/responses/"
_HEADERS = "#/components/headers/"

# A PostgreSQL string holds no NUL; as a pattern, what JSON Schema can say of it.
_NO_NUL = "^[^\\x00]*$"
_TEXT_NOTE = ("PostgreSQL cannot store the NUL character (\\u0000), so it is refused; so is an unpaired "
              "UTF-16 surrogate (\\ud800 alone), which JSON can spell but which is not Unicode.")
# A header value holds no NUL, CR or LF (the HTTP layer refuses them).
_HEADER_TEXT = "^[^\\x00\\r\\n]*$"

# real: the magnitudes a 4-byte float holds (2^128 - 2^103 rounds up to infinity; 2^-150 down to 0).
_REAL_OVERFLOW = float(2**128 - 2**103)
_REAL_UNDERFLOW = 2.0**-150
_DOUBLE_MAX = 1.7976931348623157e308
# Unix seconds of 0001-01-01 and 10000-01-01 UTC: the moments a timestamp may name.
_FIRST_SECOND = -62135596800
_END_SECOND = 253402300800
# A numeric bound with more digits than this would not survive a validator's 8-byte floats.
_MAX_BOUND_DIGITS = 300

_INTEGERS = {"int2": (16, None), "int4": (32, "int32"), "int8": (64, "int64")}
_UUID = ("^(?:{u}|\\{{{u}\\}})$".format(
    u="[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"))
_NOT_NULL = {"type": "null"}
# Header names OpenAPI reserves for its own fields: a parameter with one of them is ignored.
_RESERVED_HEADERS = {"accept", "content-type", "authorization"}


def document(config: Config, tables: Mapping[str, Table]) -> dict:
    """The OpenAPI document of a service with this configuration and these checked tables."""
    schemas = _Schemas()
    paths = {}
    for app in config.apps.values():
        paths.update(_app_paths(app, tables, schemas))
    paths.update(_service_paths())
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Attolytics", "version": __version__, "description": _INFO},
        "paths": paths,
        "components": _components(schemas.named),
    }


class _Schemas:
    """components.schemas as it fills up: each schema once, under a name OpenAPI allows."""

    def __init__(self):
        self.named = dict(_COMPONENT_SCHEMAS)
        self._names: dict[tuple, str] = {}

    def ref(self, key: tuple, name: str, make) -> dict:
        """A reference to the schema for `key`, made by `make()` and named after `name` once."""
        if key not in self._names:
            base = candidate = re.sub(r"[^A-Za-z0-9._-]", "_", name)
            suffix = 1
            while candidate in self.named:
                suffix += 1
                candidate = f"{base}_{suffix}"
            self._names[key] = candidate
            self.named[candidate] = make()
        return {"$ref": _SCHEMAS + self._names[key]}


_INFO = """\
Analytics events over HTTP into PostgreSQL. Each configured app has its own paths; each event \
type is a table, and an event is a JSON object whose keys are the table's columns.

Any other path is answered 404 (`NotFound`), any other method on these paths 405 with `Allow` \
(`MethodNotAllowed`). Every answer is JSON except `/metrics` and `/attolytics.js`, down to a \
malformed HTTP request (400), a request line or header over 16 KiB (414), a request that does \
not arrive whole within the request timeout (408), and a body over the size limit (413)."""


# --- the apps' paths ----------------------------------------------------------------------------


def _app_paths(app: App, tables: Mapping[str, Table], schemas: _Schemas) -> dict:
    """The paths of one app: its multi-table route, then one route per event type."""
    prefix = f"/apps/{_segment(app.app_id)}/events"
    typed = {type_id: tables[name] for type_id, name in app.event_types.items()}
    paths = {prefix: _path_item(app, _post_any(app, typed, schemas))}
    for type_id, table in typed.items():
        post = _post_typed(app, type_id, table, schemas)
        paths[f"{prefix}/{_segment(type_id)}"] = _path_item(app, post)
    return paths


def _segment(text: str) -> str:
    """A URL path segment for an id; most ids are spelled as they are."""
    return quote(text, safe="")


def _path_item(app: App, post: dict) -> dict:
    return {"post": post, "options": _preflight(app)}


def _post_typed(app: App, type_id: str, table: Table, schemas: _Schemas) -> dict:
    """POST /apps/<app>/events/<event type>: every event goes to the event type's table."""
    return _post(
        app,
        summary=f"Store events of type {type_id!r} in table {table.name!r}",
        description="All events of a request are stored in one transaction: all or none.",
        events=schemas.ref(("table", table.name), table.name, lambda: _event_schema(table)),
        headers=_header_parameters([table], typed=True),
        statuses=_POST_STATUSES,
    )


def _post_any(app: App, typed: Mapping[str, Table], schemas: _Schemas) -> dict:
    """POST /apps/<app>/events: each event names its event type in `_t`."""
    if typed:
        events = {"oneOf": [
            schemas.ref(("tagged", app.app_id, type_id), f"{app.app_id}.{type_id}",
                        lambda table=table, type_id=type_id: _event_schema(table, type_id))
            for type_id, table in typed.items()
        ]}
    else:
        events = {"description": "This app has no event types: no event can be stored.", "not": {}}
    return _post(
        app,
        summary="Store events of any of the app's event types, each naming its type in `_t`",
        description=("All events of a request are stored in one transaction: all or none. A request "
                     "may mix event types. A `_t` naming no event type of this app is answered 404."),
        events=events,
        headers=_header_parameters(list(dict.fromkeys(typed.values())), typed=False),
        statuses=_POST_STATUSES | {"404"},
    )


def _post(app: App, summary: str, description: str, events: dict, headers: list, statuses) -> dict:
    body = {
        "type": "object",
        "properties": {
            "secret_key": {
                "type": ["string", "null"],
                "description": ("The app's secret key; or send it as `Authorization: Bearer <key>`. "
                                "If both are sent, both must be right. Null or empty is the same as "
                                "leaving it out."),
            },
            "events": {"type": "array", "items": events},
        },
        "required": ["events"],
        "additionalProperties": False,
    }
    operation = {
        "tags": [app.app_id],
        "summary": summary,
        "description": description,
        "security": [{"bearerKey": []}, {}],
        "requestBody": {
            "required": True,
            "description": _BODY_NOTE,
            "content": {"application/json": {"schema": body}, "text/plain": {"schema": body}},
        },
        "responses": {status: _POST_RESPONSES[status] for status in sorted(statuses)},
    }
    if headers:
        operation["parameters"] = headers
    return operation


_BODY_NOTE = """\
UTF-8 JSON. `text/plain` (any charset parameter) is read as the same JSON: it is what \
`navigator.sendBeacon` can send to another origin without a preflight. The body may be \
compressed with `Content-Encoding: gzip` or `deflate`; the size limit applies to the inflated \
body too. Stricter than the schema: a key may appear only once in an object, and nesting about a \
thousand levels deep is refused (400)."""


def _preflight(app: App) -> dict:
    """OPTIONS: a browser's CORS preflight."""
    allowed = "any origin" if app.allows_any_origin else ", ".join(sorted(app.allowed_origins))
    return {
        "tags": [app.app_id],
        "summary": "CORS preflight",
        "description": (f"Allowed origins: {allowed}. A request from another origin gets no "
                        "Access-Control-Allow-* headers, so the browser refuses it."),
        "responses": {
            "204": {
                "description": "The CORS headers for the request's origin.",
                "headers": {
                    "Access-Control-Allow-Origin": {"$ref": _HEADERS + "AccessControlAllowOrigin"},
                    "Access-Control-Allow-Methods": {"$ref": _HEADERS + "AccessControlAllowMethods"},
                    "Access-Control-Allow-Headers": {"$ref": _HEADERS + "AccessControlAllowHeaders"},
                    "Access-Control-Max-Age": {"$ref": _HEADERS + "AccessControlMaxAge"},
                    "Vary": {"$ref": _HEADERS + "Vary"},
                    "Allow": {"$ref": _HEADERS + "Allow"},
                },
            },
            **_PROTOCOL_RESPONSES,
        },
    }


# --- the events ---------------------------------------------------------------------------------


def _event_schema(table: Table, type_id: str | None = None) -> dict:
    """An event of `table`: its body columns, `_t` first when it names its event type."""
    properties, required = {}, []
    if type_id is not None:
        properties["_t"] = {"const": type_id, "description": "The event type."}
        required.append("_t")
    for column in table.columns.values():
        if column.header is not None:
            continue
        properties[column.name] = _column_schema(column)
        if column.not_null and not column.has_default:
            required.append(column.name)
    title = table.name if type_id is None else f"{type_id} (table {table.name})"
    schema = {"type": "object", "title": title, "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def _column_schema(column: Column) -> dict:
    """What a column takes from JSON, null included when the column allows NULL."""
    schema = _value_schema(column.typname, _modifiers(column.sql_type))
    note = schema.pop("description", None)
    if column.has_default:
        note = " ".join(filter(None, [note, "Left out, the column gets its default."]))
    if not column.not_null:
        schema = _or_null(schema)
    schema["description"] = f"{column.sql_type}{'' if column.not_null else ', or null'}." + (
        f" {note}" if note else "")
    return schema


_MODIFIERS = re.compile(r"\((\d+)(?:,(-?\d+))?\)")


def _modifiers(sql_type: str) -> tuple[int | None, int | None]:
    """The length or precision (and scale) in a type as format_type() spells it: varchar(20)."""
    match = _MODIFIERS.search(sql_type)
    if match is None:
        return None, None
    return int(match.group(1)), int(match.group(2)) if match.group(2) is not None else None


def _value_schema(typname: str, modifiers: tuple[int | None, int | None]) -> dict:
    """The schema of a non-null value of a catalog type, as exact as the service's own check."""
    first, second = modifiers
    if typname == "bool":
        return {"type": "boolean"}
    if typname in _INTEGERS:
        return _integer(*_INTEGERS[typname])
    if typname == "float4":
        return _real()
    if typname == "float8":
        return {"type": "number", "format": "double", "minimum": -_DOUBLE_MAX, "maximum": _DOUBLE_MAX,
                "description": "Refused: a nonzero number of magnitude 2^-1075 or less, which a double "
                               "would round to zero."}
    if typname == "numeric":
        return _numeric(first, second)
    if typname in ("text", "varchar", "bpchar"):
        return _text(first)
    if typname in ("timestamptz", "timestamp"):
        return _timestamp(typname == "timestamptz", first)
    if typname == "date":
        return {"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                "description": "The year 0000 is refused."}
    if typname in ("json", "jsonb"):
        return _json(typname == "jsonb")
    if typname == "uuid":
        return {"type": "string", "pattern": _UUID,
                "description": "32 hex digits, hyphens as in the standard form or none, braces optional."}
    raise ValueError(f"no schema for type {typname!r}")  # columns.converter_for has none either


def _integer(bits: int, format_name: str | None) -> dict:
    schema = {"type": "integer", "minimum": -(2 ** (bits - 1)), "maximum": 2 ** (bits - 1) - 1,
              "description": "42.0 is 42 and accepted; 1.5, true and \"42\" are refused."}
    if format_name:
        schema["format"] = format_name
    return schema


def _real() -> dict:
    return {
        "type": "number",
        "format": "float",
        "exclusiveMinimum": -_REAL_OVERFLOW,
        "exclusiveMaximum": _REAL_OVERFLOW,
        # Refused: a nonzero number that a 4-byte float would round to zero.
        "not": {"minimum": -_REAL_UNDERFLOW, "maximum": _REAL_UNDERFLOW, "not": {"const": 0}},
        "description": "Stored as the nearest 4-byte float.",
    }


def _numeric(precision: int | None, scale: int | None) -> dict:
    if precision is None:
        return {"type": "number", "description": "Every digit is kept (PostgreSQL's limits: 131072 "
                                                 "digits before the point, 16383 after)."}
    scale = scale or 0
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


def _text(max_length: int | None) -> dict:
    schema = {"type": "string", "pattern": _NO_NUL, "description": _TEXT_NOTE}
    if max_length is not None:
        schema["maxLength"] = max_length
    return schema


def _timestamp(with_zone: bool, precision: int | None) -> dict:
    note = ("Unix seconds, or an RFC 3339 date-time with a time zone (a space instead of the T is "
            "accepted too); fractions of a second are rounded to the microsecond. Refused: a leap "
            "second (:60) and the year 0000.")
    if with_zone:
        note += (" With a UTC offset of 16 hours or more, the moment must fall within the years 1 to "
                 "9999 in UTC.")
    else:
        note += " Stored as the UTC time, which must fall within the years 1 to 9999."
    if precision is not None and precision < 6:
        note += (f" Refused: a time that, rounded to the microsecond, has more than {precision} "
                 f"digits after the second.")
    return {
        "anyOf": [
            {"type": "number", "minimum": _FIRST_SECOND, "exclusiveMaximum": _END_SECOND},
            {"type": "string", "format": "date-time"},
        ],
        "description": note,
    }


def _json(binary: bool) -> dict:
    note = "Any JSON value, numbers with all their digits; null means SQL NULL, not a JSON null."
    if not binary:
        return {"not": _NOT_NULL, "description": note}
    return {"$ref": _SCHEMAS + "JsonbValue", "not": _NOT_NULL,
            "description": note + " Refused: the NUL character (\\u0000) in a string or a key, and "
                                  "numbers beyond PostgreSQL's numeric."}


def _or_null(schema: dict) -> dict:
    """The schema, or null: a type list where the other keywords do not touch null."""
    if schema.get("not") == _NOT_NULL:  # json, jsonb: any value but null, so null is let in
        return {key: value for key, value in schema.items() if key != "not"}
    kind = schema.get("type")
    if isinstance(kind, str) and not {"not", "anyOf", "oneOf", "$ref"} & schema.keys():
        return {**schema, "type": [kind, "null"]}
    if schema.keys() == {"anyOf"}:
        return {"anyOf": [*schema["anyOf"], _NOT_NULL]}
    return {"anyOf": [schema, _NOT_NULL]}


def _header_parameters(tables: list[Table], typed: bool) -> list[dict]:
    """The request headers that fill columns of these tables, one parameter per header."""
    by_name: dict[str, list[tuple[Table, Column]]] = {}
    for table in tables:
        for column in table.columns.values():
            if column.header is not None and column.header.lower() not in _RESERVED_HEADERS:
                by_name.setdefault(column.header.lower(), []).append((table, column))
    return [_header_parameter(users, typed) for users in by_name.values()]


def _header_parameter(users: list[tuple[Table, Column]], typed: bool) -> dict:
    needed = any(c.not_null and not c.has_default for _, c in users)
    lengths = [length for _, c in users if (length := _modifiers(c.sql_type)[0]) is not None]
    schema = {"type": "string", "pattern": _HEADER_TEXT}
    if lengths:
        schema["maxLength"] = min(lengths)
    filled = ", ".join(f"{table.name}.{column.name} ({column.sql_type})" for table, column in users)
    description = (f"Fills {filled}, for each event of its table (a request without such events "
                   f"does not check it). Characters beyond ASCII travel as UTF-8; bytes that are not "
                   f"UTF-8 are refused.")
    if needed:
        description += (" Required by every event of a table whose column is NOT NULL; a request "
                        "without such events does not need it.")
    return {"name": users[0][1].header, "in": "header", "required": needed and typed,
            "description": description, "schema": schema}


# --- the service's own paths --------------------------------------------------------------------


def _service_paths() -> dict:
    return {
        "/healthz": _get("The process runs", {"200": _json_answer("It runs.", "Health")}),
        "/readyz": _get("The tables are checked and a database connection is up", {
            "200": _json_answer("Ready to store events.", "Ready"),
            "503": _json_answer("Not ready: the tables are not checked yet, or no connection.", "Ready"),
        }),
        "/metrics": _get("The service's metrics, in Prometheus' text format", {
            "200": _text_answer("The metrics.", "text/plain"),
        }),
        "/openapi.json": _get("This document", {
            "200": {"description": "The OpenAPI document: apps, event types and columns; never keys.",
                    "content": {"application/json": {"schema": {"type": "object"}}}},
            "503": {"$ref": _RESPONSES + "Unavailable"},
        }),
        "/attolytics.js": _get("The browser client", {
            "200": _text_answer("The client script.", "text/javascript"),
        }),
    }


def _get(summary: str, responses: dict) -> dict:
    return {"get": {"tags": ["service"], "summary": summary,
                    "responses": {**responses, **_PROTOCOL_RESPONSES}}}


def _json_answer(description: str, schema: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": _SCHEMAS + schema}}}}


def _text_answer(description: str, media_type: str) -> dict:
    return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}


# --- answers ------------------------------------------------------------------------------------


def _error(description: str, headers: dict | None = None) -> dict:
    answer = {"description": description,
              "content": {"application/json": {"schema": {"$ref": _SCHEMAS + "Error"}}}}
    if headers:
        answer["headers"] = headers
    return answer


_CORS = {
    "Access-Control-Allow-Origin": {"$ref": _HEADERS + "AccessControlAllowOrigin"},
    "Vary": {"$ref": _HEADERS + "Vary"},
}
_RETRY = {"Retry-After": {"$ref": _HEADERS + "RetryAfter"}}

# Answers the HTTP layer gives on any path, before a route is chosen.
_PROTOCOL_RESPONSES = {
    "400": {"$ref": _RESPONSES + "MalformedRequest"},
    "408": {"$ref": _RESPONSES + "RequestTimeout"},
    "413": {"$ref": _RESPONSES + "ContentTooLarge"},
    "414": {"$ref": _RESPONSES + "UriTooLong"},
}

_POST_STATUSES = frozenset({"200", "400", "401", "403", "408", "409", "413", "414", "415", "503"})
_POST_RESPONSES = {
    "200": {"description": "Every event is stored: answered after the COMMIT.", "headers": _CORS,
            "content": {"application/json": {"schema": {"$ref": _SCHEMAS + "Inserted"}}}},
    "400": _error("Not JSON, not UTF-8, the wrong shape, or an event that fails its table's checks "
                  "(`event` is its index, `field` the key at fault); also a row the table's "
                  "constraints refuse, or a malformed HTTP request. Nothing is stored.", _CORS),
    "401": _error("No key: neither `secret_key` nor `Authorization: Bearer`, or a malformed "
                  "Authorization header.", _CORS),
    "403": _error("A wrong key, or an Origin header the app does not allow.", _CORS),
    "404": _error("An event's `_t` names no event type of this app (`event` and `field` say which).",
                  _CORS),
    "408": _error("The request did not arrive whole within the request timeout.", _CORS),
    "409": _error("A row violates a unique index of its table. Nothing is stored.", _CORS),
    "413": _error("The body is larger than the limit, as sent or once inflated.", _CORS),
    "414": {"$ref": _RESPONSES + "UriTooLong"},
    "415": _error("A Content-Type other than application/json (charset utf-8) or text/plain, or a "
                  "Content-Encoding other than gzip or deflate.", _CORS),
    "503": _error("The database is not reachable or not ready, too many events are waiting to be "
                  "written, or the service is stopping: send the same request again after Retry-After "
                  "seconds. When the error says the events \"may or may not be stored\", sending "
                  "again may store them twice.", {**_CORS, **_RETRY}),
}


def _components(schemas: dict) -> dict:
    return {
        "schemas": schemas,
        "responses": {
            "MalformedRequest": _error("Not a valid HTTP request, or a URL or Host that is not UTF-8."),
            "RequestTimeout": _error("The request did not arrive whole within the request timeout."),
            "ContentTooLarge": _error("The body is larger than the limit."),
            "UriTooLong": _error("The request line or a header is longer than 16 KiB."),
            "Unavailable": _error("Not ready yet: send the same request again after Retry-After "
                                  "seconds.", _RETRY),
            "NotFound": _error("No such path, app or event type."),
            "MethodNotAllowed": _error("Another method than the path's.",
                                       {"Allow": {"$ref": _HEADERS + "Allow"}}),
        },
        "headers": _COMPONENT_HEADERS,
        "securitySchemes": {
            "bearerKey": {
                "type": "http",
                "scheme": "bearer",
                "description": ("The app's secret key as `Authorization: Bearer <key>`; or instead "
                                "as `secret_key` in the body."),
            },
        },
    }


_COMPONENT_SCHEMAS = {
    "Error": {
        "type": "object",
        "properties": {
            "error": {"type": "string", "description": "What is wrong, in words."},
            "event": {"type": "integer", "minimum": 0, "description": "The index of the event at fault."},
            "field": {"type": "string", "description": "The key of the event at fault."},
        },
        "required": ["error"],
        "additionalProperties": False,
    },
    "Inserted": {
        "type": "object",
        "properties": {"inserted": {"type": "integer", "minimum": 0}},
        "required": ["inserted"],
        "additionalProperties": False,
    },
    "Health": {
        "type": "object",
        "properties": {"status": {"const": "ok"}},
        "required": ["status"],
        "additionalProperties": False,
    },
    "Ready": {
        "type": "object",
        "properties": {"ready": {"type": "boolean"}, "error": {"type": "string"}},
        "required": ["ready"],
        "additionalProperties": False,
    },
    # A jsonb value: any JSON without a NUL character in a string or a key.
    "JsonbValue": {
        "description": "Any JSON value; jsonb refuses the NUL character (\\u0000) in a string or a key.",
        "pattern": _NO_NUL,
        "propertyNames": {"pattern": _NO_NUL},
        "items": {"$ref": _SCHEMAS + "JsonbValue"},
        "additionalProperties": {"$ref": _SCHEMAS + "JsonbValue"},
    },
}

_COMPONENT_HEADERS = {
    "RetryAfter": {"required": True, "description": "Seconds to wait before sending again.",
                   "schema": {"type": "integer", "minimum": 0}},
    "AccessControlAllowOrigin": {
        "description": "The request's Origin when the app allows it, `*` when it allows any; absent "
                       "when the origin is not allowed.",
        "schema": {"type": "string"}},
    "AccessControlAllowMethods": {"schema": {"const": cors.ALLOWED_METHODS}},
    "AccessControlAllowHeaders": {"schema": {"const": cors.ALLOWED_HEADERS}},
    "AccessControlMaxAge": {"schema": {"type": "integer", "minimum": 0}},
    "Vary": {"schema": {"const": "Origin"}},
    "Allow": {"required": True, "description": "The methods of the path.", "schema": {"type": "string"}},
}
