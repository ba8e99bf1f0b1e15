"""The adapter for Segment's tracking API (also spoken by RudderStack's SDKs): a batch or a single
call, its write key as HTTP Basic auth or `writeKey` in the body, and its messages as the events
of the app's call tables and typed tables."""

import base64
import binascii
import hmac
import json
from datetime import datetime, timezone
from decimal import Decimal

import orjson

from attolytics.config import App, Config
from attolytics.http.answers import ApiError
from attolytics.http.segment_messages import SENT_FIELDS, Shared, Typed, events_of
from attolytics.http.strict_json import parse_json
from attolytics.http.submission import EventsByTable, Submission

# Segment's limits: a message, and a whole batch (as inflated).
MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
# Each route's call, by its name and by analytics.js's short form; None: a batch.
CALLS = {"track": "track", "identify": "identify", "page": "page", "screen": "screen", "group": "group",
         "alias": "alias", "batch": None, "t": "track", "i": "identify", "p": "page", "s": "screen",
         "g": "group", "a": "alias", "b": None}


class SegmentBodies:
    """Reads Segment's bodies into Submissions; `configure()` says which app each write key is
    for, and `serve(tables)` gives it the typed tables."""

    def __init__(self, config: Config):
        self._typed: dict[str, Typed] = {}
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Take the write keys of this configuration's apps from the next request on."""
        self._apps = [app for app in config.apps.values() if app.segment is not None]
        self._keys = [(key, app) for app in self._apps for key in app.secret_keys]

    def apps(self) -> list[App]:
        """The apps with a segment section."""
        return self._apps

    def serve(self, tables) -> None:
        """Fill these typed tables (name -> Table) from now on."""
        self._typed = {name: Typed(table) for name, table in tables.items()}

    def parse(self, raw: bytes):
        """The body as JSON, once it is within Segment's limit for a batch."""
        if len(raw) > MAX_BATCH_BYTES:
            raise ApiError(413, f"a batch may carry at most {MAX_BATCH_BYTES // 1024} KB; this one has "
                                f"{len(raw)} bytes")
        body = parse_json(raw)
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object: a message, or a batch of them")
        return body

    def app_of(self, request, body: dict) -> tuple[App, bytes]:
        """The app whose write key the request carries, and the key (401 when none or an unknown one)."""
        key = write_key(request, body)
        found = self.app_for_key(key)
        if found is None:
            raise ApiError(401, "unknown write key")
        return found, key

    def app_for_key(self, key: bytes) -> App | None:
        """The app of a write key, or None; every key compared, in constant time."""
        found = None
        for known, app in self._keys:
            if hmac.compare_digest(key, known):
                found = app
        return found

    def read(self, request, app: App, key: bytes, call: str | None, body: dict, body_bytes: int) -> Submission:
        """The events of a request's messages for `app`, whose write `key` it carries; `call` is
        the route's (None: a batch); `body_bytes`, the size of the body.
        Counts the messages on the request (request.events_received) as soon as they are known."""
        if call is None:
            messages = body.get("batch")
            if not isinstance(messages, list):
                raise ApiError(400, "batch must be a JSON array of messages", field="batch")
        else:
            messages = [{key: value for key, value in body.items() if key != "writeKey"}]
        request.events_received = len(messages)
        received = datetime.fromtimestamp(request.received_at, timezone.utc)
        shared = Shared(body if call is None else {}, received)
        groups: dict[str, list] = {}  # table name -> [(index, event)], in first-seen order
        fields: dict = {}
        sized = body_bytes > MAX_MESSAGE_BYTES  # else no message can be larger
        for index, message in enumerate(messages):
            if sized and _size(message) > MAX_MESSAGE_BYTES:
                raise ApiError(413, f"a message may carry at most {MAX_MESSAGE_BYTES // 1024} KB", event=index)
            for table, event in events_of(index, message, call, shared, app.segment, self._typed, fields):
                groups.setdefault(table, []).append((index, event))
        return Submission(app, [key], len(messages), None, None,
                          events=EventsByTable(list(groups.items()), None),
                          sent_field=lambda table, index, column: _sent_field(fields, table, index, column))


def _size(message) -> int:
    """The bytes of a message as compact JSON, its numbers' digits as sent."""
    try:
        return len(orjson.dumps(message, default=_digits))
    except orjson.JSONEncodeError:  # an integer past 64 bits, which the strict parser keeps
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=str)
        return len(text.encode("utf-8", "surrogatepass"))


def _digits(value):
    """A Decimal (the strict parser's number with a fraction) as its digits, for orjson."""
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError


def _sent_field(fields: dict, table: str, index: int, column: str | None) -> str | None:
    """The field of message `index` that filled `column` of `table`."""
    if column is None:
        return None
    typed = fields.get((table, index))
    if typed is not None:
        return typed.get(column, f"properties.{column}")
    return SENT_FIELDS.get(column, column)


def write_key(request, body: dict) -> bytes:
    """The write key: the user of HTTP Basic auth, or the body's writeKey (both: the same one)."""
    header = request.getHeader(b"authorization")
    basic = None
    if header is not None:
        scheme, _, token = header.strip().partition(b" ")
        try:
            if scheme.lower() != b"basic":
                raise ValueError
            basic = base64.b64decode(token.strip(), validate=True).split(b":", 1)[0]
        except (ValueError, binascii.Error):
            raise ApiError(401, "Authorization must be Basic, with the write key as the user name") from None
    given = body.get("writeKey")
    if given is not None and not isinstance(given, str):
        raise ApiError(401, "writeKey must be a string", field="writeKey")
    in_body = given.encode("utf-8", errors="surrogatepass") if given else None
    if basic and in_body and basic != in_body:
        raise ApiError(401, "the writeKey in the body is not the write key of the Authorization header")
    key = basic or in_body
    if not key:
        raise ApiError(401, "the write key is missing: send it as the user name of HTTP Basic auth, "
                            "or as writeKey in the body")
    return key
