"""The paths of Segment's tracking API in the OpenAPI document: the calls, analytics.js's
settings and RudderStack's source configuration. They are the same for every configuration: the
write key, not the path, names the app."""

from attolytics.http.openapi.responses import PROTOCOL_RESPONSES, SCHEMAS
from attolytics.http.segment_body import CALLS, MAX_BATCH_BYTES, MAX_MESSAGE_BYTES



def error_answer(description: str) -> dict:
    """An answer with the JSON body of a refusal of Segment's API."""
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": SCHEMAS + "SegmentError"}}}}


_ERRORS = {
    "400": error_answer("Not JSON, or a message that fails its checks (`event` is its index in the batch, "
                        "`field` the field at fault, such as `userId` or `properties.levelNumber`). "
                        "Nothing is stored."),
    "401": error_answer("No write key (HTTP Basic user, or `writeKey` in the body), or an unknown one."),
    "403": error_answer("An Origin header the write key's app does not allow."),
    "404": error_answer("No such call."),
    "413": error_answer(f"A message over {MAX_MESSAGE_BYTES // 1024} KB, a batch over "
                        f"{MAX_BATCH_BYTES // 1024} KB, or more messages than a request may carry."),
    "415": error_answer("A Content-Type other than application/json or text/plain, or a "
                        "Content-Encoding other than gzip or deflate."),
    "429": error_answer("The app's rate limit has no room for these messages now."),
    "503": error_answer("Not ready yet, or too many events waiting: send the same request again "
                        "after Retry-After seconds."),
}
_BODY = {"type": "object", "description": "A message (`type`, `messageId`, `userId` or `anonymousId`, "
                                          "`timestamp`, `context`...), or for a batch `{batch: [...]}`."}


def segment_paths() -> dict:
    """The paths of Segment's tracking API."""
    source_config = {
        "get": {"tags": ["segment"], "summary": "RudderStack's source configuration, for the Basic auth's write key",
                "security": [{"writeKey": []}],
                "responses": {"200": {"description": "An enabled source with no device-mode destination.",
                                      "content": {"application/json": {"schema": {"type": "object"}}}},
                              **PROTOCOL_RESPONSES, "401": _ERRORS["401"]}},
        "options": {"tags": ["segment"], "summary": "A browser's CORS preflight",
                    "responses": {"204": {"description": "The CORS headers of an app that allows the page."},
                                  **PROTOCOL_RESPONSES}},
    }
    call = {"name": "call", "in": "path", "required": True, "schema": {"enum": sorted(CALLS)}}
    return {
        "/v1/{call}": {
            "post": {
                "tags": ["segment"], "parameters": [call],
                "summary": "A batch or one call of Segment's tracking API, stored in the app's call tables",
                "security": [{"writeKey": []}, {}],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _BODY}, "text/plain": {"schema": _BODY}}},
                "responses": {
                    "200": {"description": "Every message is stored, or skipped as stored already.",
                            "content": {"application/json": {"schema": {"$ref": SCHEMAS + "SegmentStored"}}}},
                    **PROTOCOL_RESPONSES, **_ERRORS},
            },
            "options": {"tags": ["segment"], "parameters": [call], "summary": "A browser's CORS preflight",
                        "responses": {"204": {"description": "The CORS headers of an app that allows the page."},
                                      **PROTOCOL_RESPONSES, "404": _ERRORS["404"]}},
        },
        "/v1/projects/{write_key}/settings": {
            "get": {"tags": ["segment"], "parameters": [
                        {"name": "write_key", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "summary": "analytics.js's settings: send every call here",
                    "responses": {"200": {"description": "The settings.", "content": {
                        "application/json": {"schema": {"type": "object"}}}},
                                  **PROTOCOL_RESPONSES, "404": error_answer("An unknown write key.")}},
        },
        "/sourceConfig": source_config,
        "/sourceConfig/": source_config,
    }


SEGMENT_SCHEMAS = {
    "SegmentError": {
        "type": "object",
        "properties": {
            "success": {"const": False},
            "error": {"type": "string", "description": "What is wrong, in words."},
            "message": {"type": "string", "description": "The same words, where RudderStack's SDKs read them."},
            "code": {"type": "string", "description": "The kind of refusal: invalid, unauthenticated, "
                                                      "wrong_key, too_large, rate_limited, unavailable..."},
            "event": {"type": "integer", "minimum": 0, "description": "The index of the message at fault."},
            "field": {"type": "string", "description": "The field of the message at fault."},
        },
        "required": ["error"],
    },
    "SegmentStored": {
        "type": "object",
        "properties": {"success": {"const": True},
                       "inserted": {"type": "integer", "minimum": 0, "description": "Messages stored."},
                       "duplicates": {"type": "integer", "minimum": 0,
                                      "description": "Messages skipped: their messageId is stored already, "
                                                     "or came earlier in the request."}},
        "required": ["success"],
    },
}
