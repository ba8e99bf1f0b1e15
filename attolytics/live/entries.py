"""What the live view shows of one finished request, with every key of every app taken out."""

import re
import time
from urllib.parse import unquote_to_bytes

import orjson

from attolytics.http.answers import ApiError
from attolytics.http.body import inflated_start
from attolytics.http.refused import KEY_MEMBERS, REDACTED, Redactor, clean
from attolytics.http.segment_body import write_key

# The routes whose requests are shown (any method); a POST to a path that names no route is too.
EVENT_HANDLERS = frozenset({"typed_events", "events", "segment_call"})
SEGMENT_HANDLER = "segment_call"
# The events shown of a request: the first ones, and the one at fault wherever it is.
EVENTS_SHOWN = 3
# At most this many characters of each event's JSON, of a body shown whole, of a name or a message.
VALUE_CHARS = 600
NAME_CHARS = 100
PATH_CHARS = 200
METHOD_CHARS = 16
MESSAGE_CHARS = 300
# The methods shown as sent; another is shown as a name, cut and without keys.
KNOWN_METHODS = frozenset({b"GET", b"POST", b"OPTIONS", b"HEAD", b"PUT", b"DELETE", b"PATCH"})
# How many times a path is percent-decoded at most (a key may be encoded more than once).
UNQUOTED_TIMES = 4
# A body longer than this (inflated) is not read as JSON for the view: only its start is, as
# text, so that what the view costs a request stays bounded by what it shows.
PARSED_BYTES = 64 << 10
ELLIPSIS = "\u2026"
# A JSON string in text: its content, and its closing quote (or nothing, when the text ends first).
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)("|\\?\Z)', re.S)
# The escapes of JSON; an escape cut short at the end of a string cut short; a member's string value.
_ESCAPE = re.compile(r'\\(?:u([0-9a-fA-F]{4})|(["\\/bfnrt]))')
_ESCAPED = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_CUT_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{0,3})?\Z")
_MEMBER_VALUE = re.compile(r'\s*:\s*"')
# The writeKey member of a Segment body not read as JSON (its value as a JSON string).
WRITE_KEY_NAME = b'"writeKey"'
_WRITE_KEY = re.compile(re.escape(WRITE_KEY_NAME) + rb'\s*:\s*("(?:[^"\\]|\\.){1,1000}")')


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
        # How much of a value's text is read: what is shown, and twice the longest key (a key may
        # be cut in two at the end of a string cut short, and at the end of the text).
        self._window = VALUE_CHARS + 2 * self._longest
        self._key_texts = frozenset(key.decode("utf-8", errors="replace") for key in self.keys)
        self._segment_apps = {key: app.app_id for app in apps if app.segment is not None
                              for key in app.secret_keys}
        # The apps' ids, as entries name them.
        self.apps = sorted({self._name(app.app_id) for app in apps})

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
            "time": request.received_at, "method": self._method(request.method), "route": route.label,
            "path": None if declared is not None else self._name(_unquoted(request.path), PATH_CHARS),
            "app": self._name(route.app_id), "event_type": self._name(route.event_type_id),
            "status": request.code, "events": request.events_received,
            "ms": round((time.monotonic() - request.started) * 1000, 2),
            "refusal": None, "values": [], "more": 0, "body": None,
        }
        if not 200 <= request.code < 300:
            entry["refusal"] = self._refusal(getattr(request, "answer_json", None))
        if request.method == b"POST":
            read = self._values(entry, request, segment)
            if segment:
                entry["app"] = self._segment_app(request, read)
        return entry

    def _name(self, name: str | None, limit: int = NAME_CHARS) -> str | None:
        """A name from the request (an app id, a path, a method), without keys (one that is a key
        whole is one), cut to `limit` as _text() cuts; a lone surrogate (which JSON cannot carry)
        replaced."""
        if name is None:
            return None
        name = clean(name[:limit + 2 * self._longest + 1])
        return REDACTED if name in self._key_texts else self._text(name, limit)

    def _method(self, method: bytes) -> str:
        """A request's method: as sent when it is one of HTTP's, else as a name (it may be long)."""
        if method in KNOWN_METHODS:
            return method.decode("ascii")
        return self._name(method[:METHOD_CHARS + 2 * self._longest + 1].decode("latin-1"), METHOD_CHARS)

    def _refusal(self, answer) -> dict | None:
        """The JSON of a refusal's answer, without keys, its texts cut; a lone surrogate (a field
        may name a member sent with one) replaced."""
        if not isinstance(answer, dict):
            return None
        shown = self.redactor.json(clean(answer))
        return {key: cut(value, MESSAGE_CHARS) if isinstance(value, str) else value
                for key, value in shown.items()}

    def _values(self, entry: dict, request, segment: bool):
        """Put the first events of the body (and the one at fault) in `entry`, or its start as text
        when it holds no list of events, is no JSON or is too long to be read as JSON; what the
        body is read as for its write key (the JSON, or a dict of its writeKey member)."""
        raw = _body(request)
        if raw is None:
            entry["body"] = "(a body that cannot be inflated)"
            return {}
        document = _parsed(raw)
        if document is NOT_READ:
            entry["body"] = self._text(self._head(raw))
            return _write_key_member(raw) if segment else {}
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
        except orjson.JSONEncodeError:  # nested past what orjson writes (255 levels)
            entry["values"], entry["more"] = [], 0
            entry["body"] = self._text(self._head(raw))
        return document

    def _json(self, value) -> str:
        """A JSON value (of a body read whole, so at most PARSED_BYTES long) as text, shown as
        _text() shows a body."""
        return self._text(self._head(orjson.dumps(value)))

    def _head(self, data: bytes) -> str:
        """As much of the start of `data` as _text() may read, as text (a character is at most 4
        bytes of UTF-8; one more tells whether there is more)."""
        return data[:(self._window + 1) * 4].decode("utf-8", errors="replace")

    def _text(self, text: str, limit: int = VALUE_CHARS) -> str:
        """The start of a body (or of a value's JSON) without keys, cut to `limit`: only its first
        characters are read, as far as a key begun in what is shown may reach; its strings are
        read as JSON strings (their escapes undone) as well as the text, and the last characters
        read, where a key may be cut in two and so not found, are never shown."""
        window = limit + 2 * self._longest
        whole = len(text) <= window
        read = self.redactor.text(self._strings(text if whole else text[:window], whole))
        if whole:
            return cut(read, limit)
        return read[:max(0, len(read) - self._longest)][:limit] + ELLIPSIS

    def _strings(self, text: str, whole: bool) -> str:
        """`text` with each JSON string in it written anew when it held a key: as a whole string,
        in it once its escapes are undone, or as the value of a key's member; a string cut at the
        end of what was read (not `whole`) loses the last characters it may hold of a key."""
        pieces, at, hide = [], 0, False
        for match in _STRING.finditer(text):
            pieces.append(text[at:match.start()])
            at = match.end()
            closed = match[2] == '"'
            value = _unescaped(match[1] if closed or whole else _CUT_ESCAPE.sub("", match[1]))
            if hide:
                shown = REDACTED
            elif closed or whole:
                shown = self.redactor.json(value)
            else:
                shown = self.redactor.text(value)
                shown = shown[:max(0, len(shown) - self._longest)]
            hide = closed and value in KEY_MEMBERS and _MEMBER_VALUE.match(text, at) is not None
            if shown == value and (closed or whole):
                pieces.append(match[0])
            else:
                written = orjson.dumps(clean(shown)).decode()
                pieces.append(written if closed else written[:-1])
        pieces.append(text[at:])
        return "".join(pieces)

    def _segment_app(self, request, document) -> str | None:
        """The app a call of Segment's API was for: the one its write key names, if any."""
        try:
            key = write_key(request, document if isinstance(document, dict) else {})
        except ApiError:
            return None
        return self._segment_apps.get(key)


def _body(request) -> bytes | None:
    """The body as sent, inflated when it was sent gzipped or deflated (None when it cannot be):
    once inflated, only its first PARSED_BYTES + 1 bytes, which tell whether it is longer."""
    content = getattr(request, "content", None)
    if content is None:
        return b""
    raw = content.getvalue()
    encoding = (request.getHeader(b"content-encoding") or b"identity").strip().lower()
    if encoding == b"identity" or not raw:
        return raw
    return inflated_start(raw, encoding, PARSED_BYTES + 1)


# Stands for a body not read as JSON: too long for the view to read, or no JSON.
NOT_READ = object()


def _parsed(raw: bytes):
    """The body as JSON, or NOT_READ."""
    if len(raw) > PARSED_BYTES:
        return NOT_READ
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return NOT_READ


def _unquoted(path: bytes) -> str:
    """A path as text, percent-decoded until that changes it no more, so that a key in it is found
    however it was encoded; past UNQUOTED_TIMES, it is not shown."""
    for _ in range(UNQUOTED_TIMES + 1):
        decoded = unquote_to_bytes(path)
        if decoded == path:
            return path.decode("utf-8", errors="replace")
        path = decoded
    return f"(a path percent-encoded more than {UNQUOTED_TIMES} times)"


def _unescaped(content: str) -> str:
    """The text a JSON string's content stands for: its escapes undone (two \\u escapes of a
    pair make one character, a lone one U+FFFD), an escape JSON does not have left as written."""
    if "\\" not in content:
        return content
    text = _ESCAPE.sub(lambda match: chr(int(match[1], 16)) if match[1] else _ESCAPED[match[2]], content)
    return text.encode("utf-16-le", errors="surrogatepass").decode("utf-16-le", errors="replace")


def _write_key_member(raw: bytes) -> dict:
    """The writeKey member of a body not read as JSON, found in its text: {"writeKey": ...}, or
    {} when it has none that can be read."""
    at = raw.find(WRITE_KEY_NAME)  # bytes.find, many times faster than a regular expression's search
    while at >= 0:
        found = _WRITE_KEY.match(raw, at)
        if found:
            try:
                return {"writeKey": orjson.loads(found[1])}
            except orjson.JSONDecodeError:
                return {}
        at = raw.find(WRITE_KEY_NAME, at + 1)
    return {}


def _events(document, segment: bool) -> list | None:
    """The events of a body: our `events`, Segment's `batch` or its one message; None when it has
    no list of them."""
    if not isinstance(document, dict):
        return None
    listed = document.get("batch" if segment else "events")
    if isinstance(listed, list):
        return listed
    return [document] if segment else None
