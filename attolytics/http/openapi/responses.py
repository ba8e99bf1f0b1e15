"""The answers of an OpenAPI document: every status with its JSON body, the headers, the
service's own paths and the component schemas that are the same for every configuration."""

from attolytics.http import cors

SCHEMAS = "#/components/schemas/"
RESPONSES = "#/components/responses/"
HEADERS = "#/components/headers/"


# --- the service's own paths --------------------------------------------------------------------


def service_paths(admin_port: bool = False) -> dict:
    """The service's own GET routes of the public port (/metrics is on the admin port when
    there is one)."""
    paths = {
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
            "503": {"$ref": RESPONSES + "Unavailable"},
        }),
        "/attolytics.js": _get("The browser client", {
            "200": _text_answer("The client script.", "text/javascript"),
        }),
    }
    if admin_port:
        del paths["/metrics"]
    return paths


def _get(summary: str, responses: dict) -> dict:
    return {"get": {"tags": ["service"], "summary": summary,
                    "responses": {**responses, **PROTOCOL_RESPONSES}}}


def _json_answer(description: str, schema: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": SCHEMAS + schema}}}}


def _text_answer(description: str, media_type: str) -> dict:
    return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}


# --- answers ------------------------------------------------------------------------------------


def error_answer(description: str, headers: dict | None = None) -> dict:
    """An answer with the JSON body of an error."""
    answer = {"description": description,
              "content": {"application/json": {"schema": {"$ref": SCHEMAS + "Error"}}}}
    if headers:
        answer["headers"] = headers
    return answer


_CORS = {
    "Access-Control-Allow-Origin": {"$ref": HEADERS + "AccessControlAllowOrigin"},
    "Vary": {"$ref": HEADERS + "Vary"},
}
_RETRY = {"Retry-After": {"$ref": HEADERS + "RetryAfter"}}

# Answers the HTTP layer gives on any path, before a route is chosen.
PROTOCOL_RESPONSES = {
    "400": {"$ref": RESPONSES + "MalformedRequest"},
    "408": {"$ref": RESPONSES + "RequestTimeout"},
    "413": {"$ref": RESPONSES + "ContentTooLarge"},
    "414": {"$ref": RESPONSES + "UriTooLong"},
}

POST_STATUSES = frozenset({"200", "400", "401", "403", "408", "409", "413", "414", "415", "503"})
POST_RESPONSES = {
    "200": {"description": "Every event is stored: answered after the COMMIT.", "headers": _CORS,
            "content": {"application/json": {"schema": {"$ref": SCHEMAS + "Inserted"}}}},
    # The 200 of a typed route whose table skips duplicates.
    "200 skipping": {"description": "Every event is stored or skipped as a duplicate: answered after "
                                    "the COMMIT.", "headers": _CORS,
                     "content": {"application/json": {"schema": {"$ref": SCHEMAS + "InsertedOrSkipped"}}}},
    "400": error_answer("Not JSON, not UTF-8, the wrong shape, or an event that fails its table's checks "
                  "(`event` is its index, `field` the key at fault); also a row the table's "
                  "constraints refuse, or a malformed HTTP request. Nothing is stored.", _CORS),
    "401": error_answer("No key: neither `secret_key` nor `Authorization: Bearer`, or a malformed "
                  "Authorization header.", _CORS),
    "403": error_answer("A wrong key, or an Origin header the app does not allow.", _CORS),
    "404": error_answer("An event's `_t` names no event type of this app (`event` and `field` say which).",
                  _CORS),
    "408": error_answer("The request did not arrive whole within the request timeout.", _CORS),
    "409": error_answer("A row violates a unique index of its table. Nothing is stored.", _CORS),
    "413": error_answer("The body is larger than the limit, as sent or once inflated; or it carries more "
                  "events than a request may (max_events_per_request) or, for an app with a rate limit, "
                  "than it takes at once (its burst). Nothing is stored.", _CORS),
    "414": {"$ref": RESPONSES + "UriTooLong"},
    "415": error_answer("A Content-Type other than application/json (charset utf-8) or text/plain, or a "
                  "Content-Encoding other than gzip or deflate.", _CORS),
    "503": error_answer("The database is not reachable or not ready, too many events are waiting to be "
                  "written, or the service is stopping: send the same request again after Retry-After "
                  "seconds. When the error says the events \"may or may not be stored\", sending "
                  "again may store them twice.", {**_CORS, **_RETRY}),
}


# The answer of a rate-limited app whose limit has no room now (only such apps list it).
RATE_LIMITED = error_answer("The app's rate limit has no room for these events now: nothing is stored; send "
                      "them again after Retry-After seconds.", {**_CORS, **_RETRY})


def components(schemas: dict) -> dict:
    """The document's components: the named `schemas`, the answers, headers and security scheme."""
    return {
        "schemas": schemas,
        "responses": {
            "MalformedRequest": error_answer("Not a valid HTTP request, or a URL or Host that is not UTF-8."),
            "RequestTimeout": error_answer("The request did not arrive whole within the request timeout."),
            "ContentTooLarge": error_answer("The body is larger than the limit."),
            "UriTooLong": error_answer("The request line or a header is longer than 16 KiB."),
            "Unavailable": error_answer("Not ready yet: send the same request again after Retry-After "
                                  "seconds.", _RETRY),
            "NotFound": error_answer("No such path, app or event type."),
            "MethodNotAllowed": error_answer("Another method than the path's.",
                                       {"Allow": {"$ref": HEADERS + "Allow"}}),
        },
        "headers": _COMPONENT_HEADERS,
        "securitySchemes": {
            "writeKey": {
                "type": "http",
                "scheme": "basic",
                "description": "An app's key (it has a segment section) as the user name; or `writeKey` in the body.",
            },
            "bearerKey": {
                "type": "http",
                "scheme": "bearer",
                "description": ("The app's secret key as `Authorization: Bearer <key>`; or instead "
                                "as `secret_key` in the body."),
            },
        },
    }


COMPONENT_SCHEMAS = {
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
        "properties": {
            "inserted": {"type": "integer", "minimum": 0, "description": "Events stored."},
            "duplicates": {"type": "integer", "minimum": 0,
                           "description": "Events skipped because an event with their id is stored "
                                          "already; present when the request wrote to a table that "
                                          "skips duplicates (for an empty batch: when the route's "
                                          "table, or on the `_t` route any of the app's tables, "
                                          "skips them)."},
        },
        "required": ["inserted"],
        "additionalProperties": False,
    },
    "InsertedOrSkipped": {
        "description": "The answer of a route whose table skips duplicates: always with `duplicates`.",
        "allOf": [{"$ref": SCHEMAS + "Inserted"}],
        "required": ["inserted", "duplicates"],
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
