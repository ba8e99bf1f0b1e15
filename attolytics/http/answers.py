"""Answers in JSON: the error a refusal carries, and how any JSON answer is written."""

import json

RETRY_AFTER_SECONDS = 5


class ApiError(Exception):
    """An answer other than 200, with the JSON body that explains it."""

    def __init__(self, status: int, error: str, event: int | None = None, field: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(error)
        self.status = status
        self.body = {"error": error}
        if event is not None:
            self.body["event"] = event
        if field is not None:
            self.body["field"] = field
        self.headers = headers or {}


class OverLimit(ApiError):
    """A refusal by the limits against abuse (413 past the events a request may carry, 429):
    its events are not kept with the refused events, which would let a flood write there."""


def unavailable(reason: str) -> ApiError:
    """A 503 that tells the client when to try again."""
    return ApiError(503, reason, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def set_headers(request, headers: dict[str, str]) -> None:
    """Set each of `headers` on the answer."""
    for name, value in headers.items():
        request.setHeader(name.encode(), value.encode())


def write_json(request, status: int, body: dict, headers: dict[str, str] | None = None) -> bytes:
    """Set status and headers for a JSON answer and return its bytes; the request remembers
    `body` (the live view shows a refusal's reason, event and field from it)."""
    data = json.dumps(body).encode()
    request.answer_json = body
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Content-Length", str(len(data)).encode())
    set_headers(request, headers or {})
    return data


def write_stored(request, inserted: int, duplicates: int | None) -> bytes:
    """The 200 answer for stored events: the JSON write_json would write, made without it."""
    if duplicates is None:
        data = b'{"inserted": %d}' % inserted
    else:
        data = b'{"inserted": %d, "duplicates": %d}' % (inserted, duplicates)
    request.setResponseCode(200)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Content-Length", b"%d" % len(data))
    return data


def write_segment_stored(request, inserted: int, duplicates: int | None) -> bytes:
    """The 200 answer of Segment's API for stored messages' events, with the counts besides."""
    data = b'{"success": true, "inserted": %d, "duplicates": %d}' % (inserted, duplicates or 0)
    request.setResponseCode(200)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Content-Length", b"%d" % len(data))
    return data


def write_error(request, error: ApiError) -> bytes:
    """The JSON answer for a refusal."""
    return write_json(request, error.status, error.body, error.headers)
