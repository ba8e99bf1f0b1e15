"""What the live view shows of one finished request, with every key of every app taken out."""

import time

import orjson

from attolytics.http.answers import ApiError
from attolytics.http.body import inflate
from attolytics.http.refused import Redactor, clean
from attolytics.http.segment_body import write_key

# The routes whose requests are shown (any method); a POST to a path that names no route is too.
EVENT_HANDLERS = frozenset({"typed_events", "events", "segment_call"})
SEGMENT_HANDLER = "segment_call"
# The events shown of a request: the first ones, and the one at fault wherever it is.
EVENTS_SHOWN = 3
# At most this many characters of each event's JSON, of a body shown whole, of a name or a message.
VALUE_CHARS = 600
NAME_CHARS = 100
MESSAGE_CHARS = 300
# How much of a request body is inflated for the view when the request does not say its limit.
INFLATED_BYTES = 1 << 20
ELLIPSIS = "\u2026"


def cut(text: str, limit: int) -> str:
    """`text`, or its first `limit` characters and an ellipsis."""
    return text if len(text) <= limit else text[:limit] + ELLIPSIS


class Entries:
    """Makes the entries of one configuration's requests: the keys of its apps are what is taken
    out (through the Redactor that keeps them out of refused events too), and the write keys of
    its apps with a segment section say which app a call of Segment's API is for."""

    def __init__(self, apps):
        apps = list(apps)
        self.redactor = Redactor(apps)
        self.keys = frozenset(key for app in apps for key in app.secret_keys)
        # The most characters a key spans, as the Redactor reads it: how far past what is shown a
        # text body must be read for a key begun in it to be whole.
        self._longest = max((len(key.decode("utf-8", errors="replace")) for key in self.keys), default=0)
        self._segment_apps = {key: app.app_id for app in apps if app.segment is not None
                              for key in app.secret_keys}

    @staticmethod
    def shows(request) -> bool:
        """Whether the view shows `request`: on an event route, or a POST to no route."""
        declared = request.route.declared
        if declared is None:
            return request.method == b"POST"
        return declared.handler in EVENT_HANDLERS

    def entry(self, request) -> dict:
        """The entry of a finished request: when it arrived (the site's clock), its method,
        route, app, event type, status, events, duration; its refusal; the values it carried."""
        route = request.route
        declared = route.declared
        segment = declared is not None and declared.handler == SEGMENT_HANDLER
        entry = {
            "time": request.received_at, "method": request.method.decode("latin-1"), "route": route.label,
            "path": None if declared is not None else self._name(request.path.decode("utf-8", "replace"), 200),
            "app": self._name(route.app_id), "event_type": self._name(route.event_type_id),
            "status": request.code, "events": request.events_received,
            "ms": round((time.monotonic() - request.started) * 1000, 2),
            "refusal": None, "values": [], "more": 0, "body": None,
        }
        if not 200 <= request.code < 300:
            entry["refusal"] = self._refusal(getattr(request, "answer_json", None))
        if request.method == b"POST":
            document = self._values(entry, request, segment)
            if segment:
                entry["app"] = self._segment_app(request, document)
        return entry

    def _name(self, name: str | None, limit: int = NAME_CHARS) -> str | None:
        """A name from the request (an app id, a path...), without keys, cut to `limit`; a lone
        surrogate (which JSON cannot carry) replaced."""
        return None if name is None else cut(self.redactor.json(clean(name)), limit)

    def _refusal(self, answer) -> dict | None:
        """The JSON of a refusal's answer, without keys, its texts cut; a lone surrogate (a field
        may name a member sent with one) replaced."""
        if not isinstance(answer, dict):
            return None
        shown = self.redactor.json(clean(answer))
        return {key: cut(value, MESSAGE_CHARS) if isinstance(value, str) else value
                for key, value in shown.items()}

    def _values(self, entry: dict, request, segment: bool):
        """Put the first events of the body (and the one at fault) in `entry`, or the whole body
        when it holds no list of events; the body as JSON, or None when it is no JSON."""
        raw = _body(request)
        if raw is None:
            entry["body"] = "(a body that cannot be inflated)"
            return None
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            entry["body"] = self._text(raw.decode("utf-8", errors="replace"))
            return None
        events = _events(document, segment)
        try:
            if events is None:
                entry["body"] = self._json(document)
                return document
            fault = (entry["refusal"] or {}).get("event")
            shown = list(range(min(EVENTS_SHOWN, len(events))))
            if isinstance(fault, int) and not isinstance(fault, bool) and EVENTS_SHOWN <= fault < len(events):
                shown.append(fault)
            entry["values"] = [[index, self._json(events[index])] for index in shown]
            entry["more"] = len(events) - len(shown)
        except (RecursionError, orjson.JSONEncodeError):  # nested past what the Redactor walks, or orjson writes (255)
            entry["values"], entry["more"] = [], 0
            entry["body"] = self._text(raw.decode("utf-8", errors="replace"))
        return document

    def _json(self, value) -> str:
        """A JSON value as text: its keys taken out, in its strings and its member names, then cut."""
        text = orjson.dumps(self.redactor.json(value)).decode()
        return cut(self.redactor.text(text), VALUE_CHARS)

    def _text(self, text: str) -> str:
        """A body that is no JSON, its keys taken out, cut: only its start is read, as far as a
        key begun in what is shown may reach; the last characters read (where a key may be cut
        in two, and so not found) are never shown."""
        window = VALUE_CHARS + self._longest
        if len(text) <= window:
            return cut(self.redactor.text(text), VALUE_CHARS)
        read = self.redactor.text(text[:window])
        return read[:max(0, len(read) - self._longest)][:VALUE_CHARS] + ELLIPSIS

    def _segment_app(self, request, document) -> str | None:
        """The app a call of Segment's API was for: the one its write key names, if any."""
        try:
            key = write_key(request, document if isinstance(document, dict) else {})
        except ApiError:
            return None
        return self._segment_apps.get(key)


def _body(request) -> bytes | None:
    """The body as sent, inflated when it was sent gzipped or deflated (None when it cannot be)."""
    content = getattr(request, "content", None)
    if content is None:
        return b""
    raw = content.getvalue()
    encoding = (request.getHeader(b"content-encoding") or b"identity").strip().lower()
    if encoding == b"identity" or not raw:
        return raw
    if encoding not in (b"gzip", b"deflate"):
        return None
    try:
        return inflate(raw, encoding, getattr(request, "max_body_bytes", INFLATED_BYTES))
    except ApiError:
        return None


def _events(document, segment: bool) -> list | None:
    """The events of a body: our `events`, Segment's `batch` or its one message; None when it has
    no list of them."""
    if not isinstance(document, dict):
        return None
    listed = document.get("batch" if segment else "events")
    if isinstance(listed, list):
        return listed
    return [document] if segment else None
