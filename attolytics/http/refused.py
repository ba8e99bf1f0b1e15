"""Refused events kept: the rows a refused request leaves in the table of refused events, when it
carried the app's key (no one fills that table anonymously), written by a writer of their own so
that a failure to keep them never holds up the events stored."""

import re

from attolytics.config import App
from attolytics.http.admission import check_keys, request_values
from attolytics.http.answers import ApiError, OverLimit
from attolytics.http.client_address import client_address
from attolytics.http.strict_json import parse_json
from attolytics.http.native_body import ROUTING_KEY, bearer_token, given_keys
from attolytics.interfaces import TableRows
from attolytics.outcomes import EventRejected, WriterBusy

# The refusals whose events are kept: the events were read and could be looked at again.
KEPT_STATUSES = frozenset({400, 404, 409, 413})
# What jsonb cannot hold, in a string or a key: NUL, and a surrogate not in a pair.
_NOT_JSONB = re.compile("[\x00\ud800-\udfff]")
# A secret_key member in text that is not JSON, and what stands for a key in what is kept.
_KEY_MEMBER = re.compile(r'("(?:secret_key|writeKey)"\s*:\s*)"(?:[^"\\]|\\.)*"?')
KEY_MEMBERS = ("secret_key", "writeKey")
REDACTED = "[secret key]"
# A key shorter than this is not looked for inside kept text: it would mangle what it matches
# (and it is no secret anyway).
_MIN_REDACTED_KEY = 8


class Redactor:
    """Takes every key of every app out of what is kept of a refused request."""

    def __init__(self, apps):
        keys = {key.decode("utf-8", errors="replace") for app in apps for key in app.secret_keys}
        long_keys = sorted((key for key in keys if len(key) >= _MIN_REDACTED_KEY), key=len, reverse=True)
        self._keys = keys
        self._pattern = re.compile("|".join(map(re.escape, long_keys))) if long_keys else None

    def text(self, text: str) -> str:
        """`text` with secret_key members and every key in it replaced."""
        text = _KEY_MEMBER.sub(lambda m: f'{m.group(1)}"{REDACTED}"', text)
        return self._pattern.sub(REDACTED, text) if self._pattern else text

    def json(self, value):
        """A JSON value with secret_key members and every key in its strings (member names too) replaced."""
        if isinstance(value, str):
            return REDACTED if value in self._keys else self.text(value)
        if isinstance(value, list):
            return [self.json(item) for item in value]
        if isinstance(value, dict):
            return {self.json(key): REDACTED if key in KEY_MEMBERS else self.json(item) for key, item in value.items()}
        return value


class RefusedEvents:
    """Keeps the events of refused requests in `table` through `writer`, counting in `metrics`
    those kept and those dropped."""

    def __init__(self, config, table, writer, metrics):
        self.table, self.writer, self.metrics = table, writer, metrics
        self.trusted_proxies = config.trusted_proxies
        self.redactor = Redactor(config.apps.values())

    def keep(self, request, app: App, raw: bytes, event_type_id: str | None, error: ApiError,
             fault_known: bool, segment: bool = False) -> None:
        """Keep the events of a request refused with `error`, when the request carried the app's
        key and no limit refused it; `fault_known` is False when PostgreSQL refused its rows
        without saying which event was at fault; `segment` for a body of Segment's API, whose
        messages are the events. Its answer does not wait."""
        if error.status not in KEPT_STATUSES or isinstance(error, OverLimit):
            return
        body, type_key = _parsed(raw), ROUTING_KEY
        if segment:
            # Segment's API found the app by its write key: the request carried it.
            body, type_key = _segment_events(body), "type"
        elif not carries_the_key(request, app, body):
            return
        table, count = self.table, self.metrics.child
        try:
            address = client_address(request, self.trusted_proxies)
            values = request_values(request, table.request_keys, address)
            rows = refused_rows(table, values, app.app_id, event_type_id, body, raw, error, fault_known,
                                self.redactor, type_key)
            kept = self.writer.insert([TableRows(table, rows)], len(raw))
        except (EventRejected, RecursionError, WriterBusy):
            count(self.metrics.rejected_dropped, app.app_id).inc(request.events_received or 1)
            return
        kept.addCallbacks(lambda _: count(self.metrics.events_kept_rejected, app.app_id).inc(len(rows)),
                          lambda _: count(self.metrics.rejected_dropped, app.app_id).inc(len(rows)))


def carries_the_key(request, app: App, body) -> bool:
    """Whether the request's key is the app's: every key it sent (in the body, as a Bearer token)
    is right, and it sent one."""
    key = body.get("secret_key") if isinstance(body, dict) else None
    try:
        check_keys(given_keys(key if isinstance(key, str) else None, bearer_token(request)), app)
    except ApiError:
        return False
    return True


# Stands for the body of a request that could not be read as JSON.
NOT_JSON = object()


def _parsed(raw: bytes):
    """The body as JSON, or NOT_JSON."""
    try:
        return parse_json(raw)
    except ApiError:
        return NOT_JSON


def refused_events(body, raw: bytes, redactor: Redactor) -> tuple[list | None, object]:
    """The request's events as sent (None when there is no list of them), and, when there is
    none, what stands for the whole request: its JSON without the key, or its text; every key
    of every app taken out."""
    if body is NOT_JSON:
        return None, redactor.text(raw.decode("utf-8", errors="replace"))
    if isinstance(body, dict) and isinstance(body.get("events"), list):
        return redactor.json(body["events"]), None
    if isinstance(body, dict):
        return None, redactor.json({key: value for key, value in body.items() if key != "secret_key"})
    return None, redactor.json(body)


def refused_rows(table, values: dict, app_id: str, event_type_id: str | None, body, raw: bytes,
                 error: ApiError, fault_known: bool, redactor: Redactor, type_key: str = ROUTING_KEY) -> list[tuple]:
    """The rows of the table of refused events for a refused request: one per event, the one at
    fault marked with its field; or one for the whole body. `fault_known` is False when
    PostgreSQL refused the rows without saying which event was at fault. Without `event_type_id`,
    each event's type is its member `type_key`."""
    events, whole = refused_events(body, raw, redactor)
    index = error.body.get("event")
    described = {"app": app_id, "status": error.status, "error": clean(error.body["error"])}
    if events is None:
        return [table.row({**described, "event_type": clean(event_type_id), "at_fault": True,
                           "field": clean(error.body.get("field")), "event": clean(whole)}, 0, values)]
    rows = []
    for position, event in enumerate(events):
        at_fault = (position == index) if index is not None else (False if fault_known else None)
        type_id = event_type_id if event_type_id is not None else (
            event.get(type_key) if isinstance(event, dict) and isinstance(event.get(type_key), str) else None)
        rows.append(table.row({**described, "event_type": clean(type_id), "event_index": position,
                               "at_fault": at_fault, "field": clean(error.body.get("field")) if at_fault else None,
                               "event": clean(event)}, position, values))
    return rows


def _segment_events(body):
    """A body of Segment's API as one of ours: its messages as the events."""
    if isinstance(body, dict) and isinstance(body.get("batch"), list):
        return {"events": body["batch"]}
    if isinstance(body, dict):
        return {"events": [{key: value for key, value in body.items() if key != "writeKey"}]}
    return body


def clean(value):
    """A JSON value jsonb can hold: NUL and unpaired surrogates replaced with U+FFFD."""
    if isinstance(value, str):
        return _NOT_JSONB.sub("\ufffd", value)
    if isinstance(value, list):
        return [clean(item) for item in value]
    if isinstance(value, dict):
        return {clean(key): clean(item) for key, item in value.items()}
    return value
