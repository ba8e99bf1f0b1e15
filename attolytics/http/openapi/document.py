"""The OpenAPI 3.1 description of a running service: its apps, event types and columns, never its keys.

What each column accepts comes from its type (column.type.json_schema()); this module lays the
paths, operations and event schemas around it.
"""

import re
from typing import Mapping
from urllib.parse import quote

from attolytics import __version__
from attolytics.config import App, Config
from attolytics.http.openapi.segment_paths import SEGMENT_SCHEMAS, segment_paths
from attolytics.http.openapi.responses import (
    COMPONENT_SCHEMAS,
    HEADERS,
    POST_RESPONSES,
    POST_STATUSES,
    PROTOCOL_RESPONSES,
    RATE_LIMITED,
    SCHEMAS,
    components,
    service_paths,
)

OPENAPI_VERSION = "3.1.0"
# A header value holds no NUL, CR or LF (the HTTP layer refuses them).
_HEADER_TEXT = "^[^\\x00\\r\\n]*$"
_NOT_NULL = {"type": "null"}
# Header names OpenAPI reserves for its own fields: a parameter with one of them is ignored.
_RESERVED_HEADERS = {"accept", "content-type", "authorization"}


def document(config: Config, tables: Mapping) -> dict:
    """The OpenAPI document of a service with this configuration and these checked tables (name ->
    Table, as the service hands them over): the apps that say `openapi: false` are left out, with
    their routes and the tables no other app writes to."""
    apps = [app for app in config.apps.values() if app.openapi]
    schemas = _Schemas()
    for name in dict.fromkeys(name for app in apps for name in app.event_types.values()):
        for column in tables[name].columns.values():
            # Named before any table, so that a table of the same name gets another.
            schemas.named.update(column.type.shared_schemas())
    paths = {}
    for app in apps:
        paths.update(_app_paths(app, tables, schemas, config.max_events_per_request))
    paths.update(service_paths(admin_port=config.admin_listen is not None))
    paths.update(segment_paths())
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Attolytics", "version": __version__, "description": _INFO},
        "paths": paths,
        "components": components(schemas.named),
    }


class _Schemas:
    """components.schemas as it fills up: each schema once, under a name OpenAPI allows."""

    def __init__(self):
        self.named = {**COMPONENT_SCHEMAS, **SEGMENT_SCHEMAS}
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
        return {"$ref": SCHEMAS + self._names[key]}


_INFO = """\
Analytics events over HTTP into PostgreSQL. Each configured app has its own paths; each event \
type is a table, and an event is a JSON object whose keys are the table's columns.

Any other path is answered 404 (`NotFound`), any other method on these paths 405 with `Allow` \
(`MethodNotAllowed`). Every answer is JSON except `/metrics` and `/attolytics.js`, down to a \
malformed HTTP request (400), a request line or header over 16 KiB (414), a request that does \
not arrive whole within the request timeout (408), and a body over the size limit (413)."""


# --- the apps' paths ----------------------------------------------------------------------------


def _app_paths(app: App, tables: Mapping, schemas: _Schemas, max_events: int) -> dict:
    """The paths of one app: its multi-table route, then one route per event type."""
    prefix = f"/apps/{_segment(app.app_id)}/events"
    typed = {type_id: tables[name] for type_id, name in app.event_types.items()}
    paths = {prefix: _path_item(app, _limited(_post_any(app, typed, schemas), app, max_events))}
    for type_id, table in typed.items():
        post = _limited(_post_typed(app, type_id, table, schemas), app, max_events)
        paths[f"{prefix}/{_segment(type_id)}"] = _path_item(app, post)
    return paths


def _limited(post: dict, app: App, max_events: int) -> dict:
    """The POST with the events a request may carry, and its 429 when the app is rate limited.

    (Said in words, not as maxItems: past it the answer is 413, which a schema cannot say.)"""
    limit = app.rate_limit
    post["description"] += (f" A request carries at most {app.most_events(max_events)} events (more: 413, "
                            f"nothing stored).")
    if limit is not None:
        post["responses"] = dict(sorted({**post["responses"], "429": RATE_LIMITED}.items()))
        post["description"] += (f" The app takes {limit.in_words()}, {limit.burst} at once: past that, "
                                f"429 with Retry-After.")
    return post


def _segment(text: str) -> str:
    """A URL path segment for an id; most ids are spelled as they are."""
    return quote(text, safe="")


def _path_item(app: App, post: dict) -> dict:
    return {"post": post, "options": _preflight(app)}


def _post_typed(app: App, type_id: str, table, schemas: _Schemas) -> dict:
    """POST /apps/<app>/events/<event type>: every event goes to the event type's table."""
    post = _post(
        app,
        summary=f"Store events of type {type_id!r} in table {table.name!r}",
        description="All events of a request are stored in one transaction: all or none.",
        events=schemas.ref(("table", table.name), table.name, lambda: _event_schema(table)),
        headers=_header_parameters([table], typed=True),
        statuses=POST_STATUSES,
    )
    if table.key:
        post["responses"]["200"] = POST_RESPONSES["200 skipping"]
    return post


def _post_any(app: App, typed: Mapping, schemas: _Schemas) -> dict:
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
        statuses=POST_STATUSES | {"404"},
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
        "responses": {status: POST_RESPONSES[status] for status in sorted(statuses)},
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
    allowed = ("any origin" if app.allows_any_origin else ", ".join(sorted(app.allowed_origins))
               or "none (no web page may post to this app)")
    return {
        "tags": [app.app_id],
        "summary": "CORS preflight",
        "description": (f"Allowed origins: {allowed}. A request from another origin gets no "
                        "Access-Control-Allow-* headers, so the browser refuses it."),
        "responses": {
            "204": {
                "description": "The CORS headers for the request's origin.",
                "headers": {
                    "Access-Control-Allow-Origin": {"$ref": HEADERS + "AccessControlAllowOrigin"},
                    "Access-Control-Allow-Methods": {"$ref": HEADERS + "AccessControlAllowMethods"},
                    "Access-Control-Allow-Headers": {"$ref": HEADERS + "AccessControlAllowHeaders"},
                    "Access-Control-Max-Age": {"$ref": HEADERS + "AccessControlMaxAge"},
                    "Vary": {"$ref": HEADERS + "Vary"},
                    "Allow": {"$ref": HEADERS + "Allow"},
                },
            },
            **PROTOCOL_RESPONSES,
        },
    }


# --- the events ---------------------------------------------------------------------------------


def _event_schema(table, type_id: str | None = None) -> dict:
    """An event of `table`: its body columns, `_t` first when it names its event type."""
    properties, required = {}, []
    if type_id is not None:
        properties["_t"] = {"const": type_id, "description": "The event type."}
        required.append("_t")
    for column in table.columns.values():
        if column.request_key is not None:  # filled from a header or by the service
            continue
        partition = table.accepted[1].decl if table.accepted and table.accepted[0] == column.name else None
        properties[column.name] = _column_schema(column, column.name in table.key and partition is None, partition)
        if column.not_null and not column.has_default:
            required.append(column.name)
    title = table.name if type_id is None else f"{type_id} (table {table.name})"
    schema = {"type": "object", "title": title, "properties": properties, "additionalProperties": False}
    filled = [f"{c.name} ({c.source}{', anonymized' if c.anonymize else ''})"
              for c in table.columns.values() if c.source is not None]
    if filled:
        schema["description"] = f"Filled by the service, never by the event: {', '.join(filled)}."
    if required:
        schema["required"] = required
    return schema


def _column_schema(column, is_key: bool = False, partition=None) -> dict:
    """What a column takes from JSON, null included when the column allows NULL; for the column
    that picks a partition (`partition`, a PartitionDecl), the time range kept."""
    schema = column.type.json_schema()
    note = schema.pop("description", None)
    if partition is not None:
        note = " ".join(filter(None, [note, (
            f"Picks the event's partition: the time must fall within the "
            f"{_intervals(partition.keep, partition.interval)} kept (UTC, the current one included) or "
            f"the {_intervals(partition.ahead, partition.interval)} after it; any other is refused with 400.")]))
    if is_key:
        note = " ".join(filter(None, [note, "The event's id: an event whose id is stored already is "
                                            "skipped and counted in `duplicates`."]))
    if column.has_default:
        note = " ".join(filter(None, [note, "Left out, the column gets its default."]))
    if not column.not_null:
        schema = _or_null(schema)
    schema["description"] = f"{column.sql_type}{'' if column.not_null else ', or null'}." + (
        f" {note}" if note else "")
    return schema


def _intervals(count: int, interval: str) -> str:
    return f"{count} {interval}{'' if count == 1 else 's'}"


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


def _header_parameters(tables: list, typed: bool) -> list[dict]:
    """The request headers that fill columns of these tables, one parameter per header."""
    by_name: dict[str, list[tuple]] = {}
    for table in tables:
        for column in table.columns.values():
            if column.header is not None and column.header.lower() not in _RESERVED_HEADERS:
                by_name.setdefault(column.header.lower(), []).append((table, column))
    return [_header_parameter(users, typed) for users in by_name.values()]


def _header_parameter(users: list[tuple], typed: bool) -> dict:
    needed = any(c.not_null and not c.has_default for _, c in users)
    lengths = [length for _, c in users if (length := c.type.json_schema().get("maxLength")) is not None]
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
