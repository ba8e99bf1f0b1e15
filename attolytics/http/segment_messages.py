"""Segment messages as rows' events: each call's checks, its event for its call table, and for a
track whose name has a typed table, that table's event, filled from the message and its
properties."""

import uuid
from datetime import datetime
from functools import lru_cache

from attolytics.config import SegmentSettings
from attolytics.config.segment_section import CALL_TABLES, FROM_THE_TRACK
from attolytics.http.answers import ApiError
from attolytics.rfc3339 import read_moment

# The field of a message that fills each column, for errors: a client knows its message's names.
SENT_FIELDS = {
    "id": "messageId", "anonymous_id": "anonymousId", "user_id": "userId", "sent_at": "sentAt",
    "original_timestamp": "timestamp", "timestamp": "timestamp", "received_at": "receivedAt",
    "context": "context", "event": "event", "event_text": "event", "properties": "properties",
    "traits": "traits", "name": "name", "category": "category", "group_id": "groupId",
    "previous_id": "previousId",
}
# The fields each call needs, besides userId or anonymousId.
_REQUIRED = {"track": ("event",), "group": ("groupId",), "alias": ("previousId", "userId")}
# The object members each call stores as jsonb.
_OBJECTS = {"track": ("properties",), "identify": ("traits",), "page": ("properties",),
            "screen": ("properties",), "group": ("traits",), "alias": ()}
# The string members each call stores as text, by column.
_STRINGS = {"page": {"name": "name", "category": "category"}, "screen": {"name": "name", "category": "category"},
            "group": {"group_id": "groupId"}, "alias": {"previous_id": "previousId"}}


# Names up to this long are remembered (event and property names repeat from message to message);
# a longer one is worked out each time, so that what is kept stays small.
_REMEMBERED_NAME = 100


def snake_case(name: str) -> str:
    """A name in snake case, as Segment names columns: `Level Completed` and `levelCompleted`
    are `level_completed`, `HTTPStatus` is `http_status`. In time linear in the name's length,
    whatever a client sends."""
    return _remembered_snake_case(name) if len(name) <= _REMEMBERED_NAME else _snake_case(name)


def _snake_case(name: str) -> str:
    words, last = [], len(name) - 1
    for position, char in enumerate(name):
        if not char.isalnum():
            if words and words[-1] != "_":
                words.append("_")
            continue
        if char.isupper() and position and words and words[-1] != "_":
            before = name[position - 1]
            # a word starts: after a lower-case letter or a digit, or at the last capital of a
            # run followed by a lower-case letter (HTTPStatus: http_status)
            if before.islower() or before.isdigit() or (
                    before.isupper() and position < last and name[position + 1].islower()):
                words.append("_")
        words.append(char.lower())
    return "".join(words).strip("_")


_remembered_snake_case = lru_cache(maxsize=4096)(_snake_case)


class Shared:
    """What a batch gives each of its messages: its context and sentAt, and the time it arrived."""

    __slots__ = ("context", "sent_at", "received_at")

    def __init__(self, body: dict, received_at: datetime):
        context = body.get("context")
        if context is not None and not isinstance(context, dict):
            raise ApiError(400, "the batch's context must be a JSON object", field="context")
        self.context = context or {}
        self.sent_at = _moment(body.get("sentAt"), None, "sentAt") if "sentAt" in body else None
        self.received_at = received_at


class Typed:
    """A typed table as messages fill it: its name, and the columns an event may fill."""

    __slots__ = ("name", "columns")

    def __init__(self, table):
        self.name = table.name
        self.columns = [column.name for column in table.ordered if column.request_key is None]


def events_of(index: int, message, call: str | None, shared: Shared, settings: SegmentSettings,
              typed: dict[str, Typed], fields: dict) -> list[tuple[str, dict]]:
    """The (table name, event) pairs of message number `index`: its call table's, and a typed
    table's for a track named under `events`. `call` is the route's call (None: the message's
    type says). Records in `fields` [(table, index)] -> {column: the message's field} for a typed
    event. Raises ApiError naming the message and the field."""
    if type(message) is not dict:
        raise ApiError(400, "a message must be a JSON object", event=index)
    call = _call(index, message, call)
    for name in _REQUIRED.get(call, ()):
        _string(index, message, name, required=True)
    user_id, anonymous_id = _string(index, message, "userId"), _string(index, message, "anonymousId")
    if not user_id and not anonymous_id:  # RudderStack's SDKs send "" for no user id
        raise ApiError(400, "a message needs userId or anonymousId", event=index, field="userId")
    event = _common(index, message, shared, user_id, anonymous_id)
    for member in _OBJECTS[call]:
        event[member] = _object(index, message, member)
    if call == "identify" and "traits" not in message:
        # RudderStack's SDKs send an identify's traits in its context.
        traits = event["context"].get("traits")
        event["traits"] = {} if traits is None else traits
    for column, member in _STRINGS.get(call, {}).items():
        value = _string(index, message, member)
        if value is not None:
            event[column] = value
    found = [(settings.call_tables[call], event)]
    if call == "track":
        name = message["event"]
        event["event"], event["event_text"] = snake_case(name), name
        table = settings.events.get(name)
        if table is not None:
            found.append(_typed_event(index, event, shared, typed[table], fields))
    return found


def _call(index: int, message: dict, route_call: str | None) -> str:
    """The message's call: its type, which the route's call (if any) must match."""
    kind = message.get("type")
    if route_call is not None and kind in (None, route_call):
        return route_call
    if route_call is not None:
        raise ApiError(400, f"type is {kind!r} on the route of {route_call} calls", event=index, field="type")
    if not isinstance(kind, str) or kind not in CALL_TABLES:
        raise ApiError(400, f"type must be one of {', '.join(CALL_TABLES)}, got {_shown(kind)}",
                       event=index, field="type")
    return kind


def _common(index: int, message: dict, shared: Shared, user_id, anonymous_id) -> dict:
    """The call table's event as far as the columns every call table has (those the message
    leaves empty left out; received_at is the service's)."""
    message_id = _string(index, message, "messageId")
    event = {"id": message_id if message_id is not None else str(uuid.uuid4())}
    if anonymous_id is not None:
        event["anonymous_id"] = anonymous_id
    if user_id is not None:
        event["user_id"] = user_id
    context = _object(index, message, "context")
    event["context"] = {**shared.context, **context} if shared.context else context
    # Segment's SDKs send `timestamp`; RudderStack's `originalTimestamp`.
    stamp_field = "timestamp" if "timestamp" in message else "originalTimestamp"
    original = _moment(message.get(stamp_field), index, stamp_field)
    sent = _moment(message["sentAt"], index, "sentAt") if "sentAt" in message else shared.sent_at
    received = shared.received_at
    if original is None:
        moment = received
    else:
        event["original_timestamp"] = moment = original
        if sent is not None:
            try:  # the device's clock corrected by how far it was off when it sent the message
                moment = received - (sent - original)
            except OverflowError:
                raise ApiError(400, "timestamp and sentAt are too far apart", event=index,
                               field=stamp_field) from None
    if sent is not None:
        event["sent_at"] = sent
    event["timestamp"] = moment
    return event


def _typed_event(index: int, track: dict, shared: Shared, typed: Typed, fields: dict) -> tuple[str, dict]:
    """The typed table's event of a track: its common columns from the message, its others from
    the properties by name or by the snake case of the property's name. The properties taken
    leave the track's `properties`."""
    properties = track["properties"]
    by_snake = None
    event, sent, taken = {}, {}, []
    for column in typed.columns:
        if column in FROM_THE_TRACK:
            value = shared.received_at if column == "received_at" else track.get(column)
            sent[column] = SENT_FIELDS[column]
            if value is not None:
                event[column] = value
            continue
        key = column if column in properties else None
        if key is None:
            if by_snake is None:
                by_snake = {}
                for name in properties:
                    by_snake.setdefault(snake_case(name), name)
            key = by_snake.get(column)
        if key is not None:
            event[column], sent[column] = properties[key], f"properties.{key}"
            taken.append(key)
    if taken:
        track["properties"] = {key: value for key, value in properties.items() if key not in taken}
    fields[(typed.name, index)] = sent
    return typed.name, event


def _string(index: int, message: dict, name: str, required: bool = False) -> str | None:
    value = message.get(name)
    if value is None:
        if required:
            raise ApiError(400, f"{name} is missing; a {message.get('type', 'such')} call needs it",
                           event=index, field=name)
        return None
    if not isinstance(value, str) or (required and not value):
        raise ApiError(400, f"{name} must be a{' non-empty' if required else ''} string, got {_shown(value)}",
                       event=index, field=name)
    return value


def _object(index: int, message: dict, name: str) -> dict:
    value = message.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, f"{name} must be a JSON object, got {_shown(value)}", event=index, field=name)
    return value


def _moment(value, index: int | None, name: str) -> datetime | None:
    """An RFC 3339 date-time with a time zone, read as a timestamptz column reads it; None for none."""
    if value is None:
        return None
    moment = None
    if isinstance(value, str):
        try:
            moment = read_moment(value)
        except (ValueError, OverflowError):
            pass
    if moment is None:
        raise ApiError(400, f"{name} must be an ISO 8601 date-time with a time zone, such as "
                            f"2026-12-07T10:00:00.000Z, got {_shown(value)}", event=index, field=name)
    return moment


def _shown(value) -> str:
    """A value as an error message shows it: short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
