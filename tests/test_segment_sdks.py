"""The Segment-compatible intake (issue 20) with the real server-side SDKs: Segment's and
RudderStack's for Python, and Segment's for Node (run by Debian's node, from tests/js). Each sends
all six calls, and the rows are checked one by one in PostgreSQL; a batch sent again, by the SDK
after a lost answer or by hand, is stored once; gzip bodies are read; a refused batch is not
retried.

What each SDK sends, as measured for these tests:
- all three POST only to <host>/v1/batch with `Authorization: Basic base64(writeKey + ":")`;
- segment-analytics-python adds `writeKey` and `sentAt` to the body, gzips only with gzip=True,
  and counts any 2xx as sent;
- rudder-sdk-python always gzips, puts no `writeKey` in the body, sends an identify's traits in
  `context.traits`, counts only 200 as sent, and retries a 4xx unless its JSON has `code`;
- @segment/analytics-node never gzips, sends `writeKey` and `sentAt`, and its message ids are
  `node-next-<ms>-<uuid>`, no UUIDs; a page's category is copied into its properties.
"""

import base64
import gzip
import json
import os
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import pytest_twisted
from rudderstack.analytics import Client as RudderClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from support.browser import AccessLog
from support.configs import segment_config
from support.programs import required_program

pytestmark = pytest.mark.service

log = Logger()

TESTS = Path(__file__).parent
NODE_CLIENT = TESTS / "sdk_clients" / "segment_node.js"
PYTHON_CLIENT = TESTS / "sdk_clients" / "python_sdks.py"
# How long a client may take to send and flush (retries included) before it is killed.
CLIENT_SECONDS = 60
NODE_MODULES = TESTS / "js" / "node_modules" / "@segment" / "analytics-node"
INSTALL_NODE = "apt-get install nodejs npm (Debian's node), then npm ci --prefix tests/js"

KEY = "sdk-write-key-0123456789abcdef"
SCHEMA = "mygame"
CONFIG = segment_config(KEY, SCHEMA)

SDKS = ("segment-python", "rudder-python", "segment-node")
# What each SDK names itself in context.library.
LIBRARIES = {"segment-python": "analytics-python", "rudder-python": "analytics-python",
             "segment-node": "@segment/analytics-node"}
CALL_TABLES = ("tracks", "identifies", "pages", "screens", "groups", "aliases")


# The calls the SDKs make


@dataclass
class Call:
    """One SDK call, its arguments named as the Python SDKs name them."""

    method: str
    arguments: dict


def six_calls(ids: list[str], when: datetime, user: str = "player-1", anonymous: str = "anon-1") -> list[Call]:
    """Each of the six calls, a track of a typed event and one of an untyped event first; `ids`
    are their seven message ids, `when` the timestamp of each. The page is an anonymous visitor's."""
    common = [{"message_id": id, "timestamp": when} for id in ids]
    return [
        Call("track", {"user_id": user, "anonymous_id": anonymous, "event": "Level Completed",
                       "properties": {"levelNumber": 3, "score": 1200, "difficulty": "hard"}, **common[0]}),
        Call("track", {"user_id": user, "event": "Button Clicked",
                       "properties": {"button": "play", "tries": 2}, **common[1]}),
        Call("identify", {"user_id": user, "traits": {"email": "ann@example.com", "plan": "pro"}, **common[2]}),
        Call("page", {"anonymous_id": anonymous, "category": "Docs", "name": "Install",
                      "properties": {"path": "/install"}, **common[3]}),
        Call("screen", {"user_id": user, "category": "Menus", "name": "Main Menu",
                        "properties": {"from": "splash"}, **common[4]}),
        Call("group", {"user_id": user, "group_id": "guild-7", "traits": {"name": "The Guild", "size": 12},
                       **common[5]}),
        Call("alias", {"previous_id": anonymous, "user_id": user, **common[6]}),
    ]


def new_ids(count: int = 7) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


def a_minute_ago() -> datetime:
    """A timestamp in whole milliseconds (what every SDK keeps of it), a minute before now."""
    now = datetime.now(timezone.utc) - timedelta(minutes=1)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass
class Outcome:
    """What an SDK reported of its sends: its errors (as text)."""

    errors: list[str] = field(default_factory=list)


class _Collected(ProcessProtocol):
    """A client process's output, and a Deferred of its exit code."""

    def __init__(self):
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.ended = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out.append(data)

    def errReceived(self, data: bytes) -> None:
        self.err.append(data)

    def processEnded(self, reason) -> None:
        self.ended.callback(reason.value.exitCode)


async def run_client(argv: list[str], seconds: float = CLIENT_SECONDS) -> dict:
    """Run a client script of tests/sdk_clients (it sends, flushes and exits), killed after
    `seconds`; the JSON object of its last line of output."""
    collected = _Collected()
    process = reactor.spawnProcess(collected, argv[0], argv, env=dict(os.environ))
    deadline = reactor.callLater(seconds, process.signalProcess, "KILL")
    try:
        code = await collected.ended
    finally:
        if deadline.active():
            deadline.cancel()
    err = b"".join(collected.err).decode(errors="replace")
    if err:
        log.info("{client} wrote on standard error:\n{err}", client=Path(argv[1]).name, err=err)
    assert code == 0, f"{Path(argv[1]).name} ended with {code} (killed after {seconds} s?):\n{err[-4000:]}"
    return json.loads(b"".join(collected.out).decode().strip().splitlines()[-1])


def _segment_names(arguments: dict) -> dict:
    """The Python SDKs' argument names as analytics-node and the messages name them (user_id:
    userId); a timestamp as ISO text."""
    named = {}
    for name, value in arguments.items():
        head, *rest = name.split("_")
        camel = head + "".join(part.title() for part in rest)
        named[camel] = value.isoformat() if isinstance(value, datetime) else value
    return named


def _python_arguments(arguments: dict) -> dict:
    """The arguments as JSON carries them to the Python client script: a timestamp as ISO text."""
    return {name: value.isoformat() if isinstance(value, datetime) else value for name, value in arguments.items()}


def _node() -> str:
    """Debian's node, with tests/js installed (missing: the test fails under CI, else is skipped)."""
    node = required_program("node", INSTALL_NODE)
    if not NODE_MODULES.is_dir():
        message = f"this test needs {NODE_MODULES}: {INSTALL_NODE}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return node


async def send_with(sdk: str, url: str, calls: list[Call], key: str = KEY, **options) -> Outcome:
    """Make `calls` with `sdk` pointed at `url` (its `host`), flush, and report its errors. Each SDK
    runs in a process of its own (the Python SDKs block while they flush and retry)."""
    if sdk == "segment-node":
        plan = {"host": url, "writeKey": key, "settings": options,
                "calls": [[call.method, _segment_names(call.arguments)] for call in calls]}
        report = await run_client([_node(), str(NODE_CLIENT), json.dumps(plan)])
        log.info("analytics-node got answers {statuses}", statuses=report["statuses"])
    else:
        plan = {"sdk": sdk.split("-")[0], "host": url, "writeKey": key,
                "options": {"max_retries": 2, "timeout": 10, "upload_interval": 0.2, **options},
                "calls": [[call.method, _python_arguments(call.arguments)] for call in calls]}
        report = await run_client([sys.executable, str(PYTHON_CLIENT), json.dumps(plan)])
    return Outcome(report["errors"])


# What they store


def rows(sql, table: str, columns: str) -> dict:
    """The rows of a call table of the app's schema by id: {id: (columns...)}."""
    return {row[0]: row[1:] for row in sql(f"select id, {columns} from {SCHEMA}.{table}")}


def counts(sql) -> dict:
    """How many rows each call table and the typed table hold."""
    found = {table: sql(f"select count(*) from {SCHEMA}.{table}")[0][0] for table in CALL_TABLES}
    found["level_completed"] = sql("select count(*) from level_completed")[0][0]
    return found


def check_six_calls_stored(sql, sdk: str, ids: list[str], when: datetime, sent_between: tuple) -> None:
    """The rows of six_calls(ids, when), sent by `sdk` between the two instants, one by one."""
    level, button, identify, page, screen, group, alias = ids
    assert rows(sql, "tracks", "user_id, anonymous_id, event, event_text, properties") == {
        level: ("player-1", "anon-1", "level_completed", "Level Completed", {"difficulty": "hard"}),
        button: ("player-1", None, "button_clicked", "Button Clicked", {"button": "play", "tries": 2}),
    }
    assert sql("select id, user_id, level_number, score from level_completed") == [(level, "player-1", 3, 1200)]
    assert rows(sql, "identifies", "user_id, anonymous_id, traits") == {
        identify: ("player-1", None, {"email": "ann@example.com", "plan": "pro"}),
    }
    # analytics-node copies a page's category into its properties (as analytics.js does).
    page_properties = {"path": "/install", **({"category": "Docs"} if sdk == "segment-node" else {})}
    assert rows(sql, "pages", "user_id, anonymous_id, name, category, properties") == {
        page: (None, "anon-1", "Install", "Docs", page_properties),
    }
    assert rows(sql, "screens", "user_id, name, category, properties") == {
        screen: ("player-1", "Main Menu", "Menus", {"from": "splash"}),
    }
    assert rows(sql, "groups", "user_id, group_id, traits") == {
        group: ("player-1", "guild-7", {"name": "The Guild", "size": 12}),
    }
    assert rows(sql, "aliases", "user_id, previous_id") == {alias: ("player-1", "anon-1")}

    before, after = sent_between
    for table in CALL_TABLES:
        for id, context, received, sent, original, corrected in sql(
                f"select id, context, received_at, sent_at, original_timestamp, timestamp from {SCHEMA}.{table}"):
            assert context["library"]["name"] == LIBRARIES[sdk], (table, id, context)
            assert before <= received <= after, (table, id, received)
            assert original == when, (table, id, original)
            # The SDK stamps sentAt as it sends, on the same clock as the service's.
            assert before - timedelta(seconds=1) <= sent <= received + timedelta(seconds=1), (table, id, sent)
            # received_at - (sent_at - timestamp): the message's time, the device's clock corrected.
            assert abs(corrected - (received - (sent - original))) <= timedelta(milliseconds=1), (table, id)
            assert abs(corrected - when) < timedelta(seconds=5), (table, id, corrected)
    [(typed_timestamp, track_timestamp)] = sql(
        f"select l.timestamp, t.timestamp from level_completed l join {SCHEMA}.tracks t using (id)")
    assert typed_timestamp == track_timestamp


# The service


@pytest.fixture
def segment_app(start):
    """The service with the app mygame, whose write key is KEY and whose Level Completed events
    also fill the typed table level_completed."""
    running = pytest_twisted.blockon(ensureDeferred(start(CONFIG)))
    assert running.fatal == []
    return running


def url_of(running) -> str:
    return f"http://127.0.0.1:{running.port}"


def basic(key: str = KEY) -> str:
    """The Authorization header every SDK sends: the write key as user, no password."""
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def batch_body(calls: list[Call], sent_at: datetime) -> dict:
    """The body of a /v1/batch request with these calls, as segment-analytics-python writes it."""
    batch = []
    for call in calls:
        message = {"type": call.method, "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
                   "integrations": {}}
        for name, value in _segment_names(call.arguments).items():
            message[name] = value
        batch.append(message)
    return {"batch": batch, "sentAt": sent_at.isoformat()}


# Each SDK, all six calls


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("sdk, options", [
    ("segment-python", {}),
    ("segment-python", {"gzip": True}),
    ("rudder-python", {}),  # gzips by default
    ("segment-node", {}),
], ids=["segment-python", "segment-python-gzip", "rudder-python", "segment-node"])
async def test_each_sdk_stores_its_six_calls_row_by_row(segment_app, sql, sdk, options):
    if sdk == "rudder-python":
        assert RudderClient.DefaultConfig.gzip is True  # what this case relies on for gzip
    ids, when = new_ids(), a_minute_ago()
    with AccessLog() as access:
        before = datetime.now(timezone.utc)
        outcome = await send_with(sdk, url_of(segment_app), six_calls(ids, when), **options)
        after = datetime.now(timezone.utc)
    assert outcome.errors == []
    # One batch, or more when the SDK's timer struck between two calls: each answered 200.
    statuses = [line["status"] for line in access.lines if line["method"] == "POST"]
    assert statuses and set(statuses) == {200}, statuses
    assert counts(sql) == {"tracks": 2, "identifies": 1, "pages": 1, "screens": 1, "groups": 1, "aliases": 1,
                           "level_completed": 1}
    check_six_calls_stored(sql, sdk, ids, when, (before, after))


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("sdk", SDKS)
async def test_the_same_calls_sent_again_by_the_sdk_are_stored_once(segment_app, sql, sdk):
    ids, when = new_ids(), a_minute_ago()
    before = datetime.now(timezone.utc)
    assert (await send_with(sdk, url_of(segment_app), six_calls(ids, when))).errors == []
    after = datetime.now(timezone.utc)
    stored = {table: sql(f"select * from {SCHEMA}.{table} order by id") for table in CALL_TABLES}
    # A client that lost the answer sends the same messages again, in a new request with a new sentAt.
    assert (await send_with(sdk, url_of(segment_app), six_calls(ids, when))).errors == []
    assert {table: sql(f"select * from {SCHEMA}.{table} order by id") for table in CALL_TABLES} == stored
    assert sql("select count(*) from level_completed") == [(1,)]
    check_six_calls_stored(sql, sdk, ids, when, (before, after))


class Between(Resource):
    """Between an SDK and the service: passes each request on, but answers the first `lose` of
    them 503 whatever the service answered, as if its answer had been lost on the way. Keeps the
    path, headers and batch body (decompressed) of each request it saw."""

    isLeaf = True

    def __init__(self, running, lose: int = 0):
        super().__init__()
        self.running = running
        self.lose = lose
        self.requests: list[tuple[str, dict]] = []
        self.bodies: list[dict] = []
        self.passed: list[int] = []

    def render_POST(self, request):
        body = request.content.read()
        headers = {name: request.getHeader(name) for name in ("Content-Type", "Content-Encoding", "Authorization")
                   if request.getHeader(name) is not None}
        plain = gzip.decompress(body) if headers.get("Content-Encoding") == "gzip" else body
        self.requests.append((request.path.decode(), headers))
        self.bodies.append(json.loads(plain))
        passing = ensureDeferred(self.running.client.request("POST", request.path.decode(), body, headers))

        def answer(passed):
            self.passed.append(passed.status)
            if self.lose > 0:
                self.lose -= 1
                request.setResponseCode(503)
                request.setHeader("Content-Type", "application/json")
                request.write(b'{"error": "the answer was lost"}')
            else:
                request.setResponseCode(passed.status)
                request.setHeader("Content-Type", passed.headers.get("content-type", "application/json"))
                request.write(passed.body)
            request.finish()

        def failed(failure):
            log.failure("passing a request on", failure)
            request.setResponseCode(502)
            request.finish()

        passing.addCallbacks(answer, failed)
        return NOT_DONE_YET


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("sdk", SDKS)
async def test_a_batch_the_sdk_retries_after_a_lost_answer_is_stored_once(segment_app, sql, sdk):
    between = Between(segment_app, lose=1)
    port = reactor.listenTCP(0, Site(between), interface="127.0.0.1")
    try:
        ids, when = new_ids(), a_minute_ago()
        before = datetime.now(timezone.utc)
        outcome = await send_with(sdk, f"http://127.0.0.1:{port.getHost().port}", six_calls(ids, when))
        after = datetime.now(timezone.utc)
    finally:
        await port.stopListening()
    assert outcome.errors == []
    # The service stored the first request and answered it; the SDK, told 503, sent the same
    # messages again in a new request (with a new sentAt).
    assert set(between.passed) == {200} and len(between.passed) >= 2, between.passed
    first, again, *more = [[message["messageId"] for message in body["batch"]] for body in between.bodies]
    assert first == again
    assert sorted(first + [id for batch in more for id in batch]) == sorted(ids)
    assert counts(sql) == {"tracks": 2, "identifies": 1, "pages": 1, "screens": 1, "groups": 1, "aliases": 1,
                           "level_completed": 1}
    check_six_calls_stored(sql, sdk, ids, when, (before, after))


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("sdk, options, encoding, key_in_body", [
    ("segment-python", {}, None, True),
    ("segment-python", {"gzip": True}, "gzip", True),
    ("rudder-python", {}, "gzip", False),
    ("segment-node", {}, None, True),
], ids=["segment-python", "segment-python-gzip", "rudder-python", "segment-node"])
async def test_the_sdks_own_message_ids_are_the_row_ids(segment_app, sql, sdk, options, encoding, key_in_body):
    between = Between(segment_app)
    port = reactor.listenTCP(0, Site(between), interface="127.0.0.1")
    try:
        calls = six_calls(new_ids(), a_minute_ago())
        for call in calls:
            del call.arguments["message_id"]
        outcome = await send_with(sdk, f"http://127.0.0.1:{port.getHost().port}", calls, **options)
    finally:
        await port.stopListening()
    assert outcome.errors == []
    assert set(between.passed) == {200}, between.passed
    # What the SDK sent: POSTs to /v1/batch with the key in Basic auth, gzipped or not.
    for path, headers in between.requests:
        assert path == "/v1/batch"
        assert headers.get("Authorization") == basic()
        assert headers.get("Content-Encoding") == encoding
        assert headers["Content-Type"].startswith("application/json")
    assert all(("writeKey" in body) == key_in_body for body in between.bodies)
    sent = [message for body in between.bodies for message in body["batch"]]
    assert [message["type"] for message in sent] == [call.method for call in calls]
    ids = [message["messageId"] for message in sent]
    if sdk == "segment-node":
        assert all(id.startswith("node-next-") for id in ids), ids
    else:
        assert all(str(uuid.UUID(id)) == id for id in ids), ids
    stored = {table: sorted(row[0] for row in sql(f"select id from {SCHEMA}.{table}")) for table in CALL_TABLES}
    assert stored == {"tracks": sorted(ids[:2]), "identifies": [ids[2]], "pages": [ids[3]], "screens": [ids[4]],
                      "groups": [ids[5]], "aliases": [ids[6]]}
    assert sql("select id from level_completed") == [(ids[0],)]


# The same batch by hand: plain and gzipped, and a message repeated within one batch


@pytest_twisted.ensureDeferred
async def test_a_batch_resent_by_hand_plain_or_gzipped_is_stored_once(segment_app, sql):
    ids, when = new_ids(), a_minute_ago()
    calls = six_calls(ids, when)
    before = datetime.now(timezone.utc)
    assert (await send_with("segment-python", url_of(segment_app), calls)).errors == []
    after = datetime.now(timezone.utc)
    stored = {table: sql(f"select * from {SCHEMA}.{table} order by id") for table in CALL_TABLES}
    body = json.dumps(batch_body(calls, datetime.now(timezone.utc))).encode()
    plain = await segment_app.client.request(
        "POST", "/v1/batch", body, {"Content-Type": "application/json", "Authorization": basic()})
    gzipped = await segment_app.client.request(
        "POST", "/v1/batch", gzip.compress(body),
        {"Content-Type": "application/json", "Content-Encoding": "gzip", "Authorization": basic()})
    for answer in (plain, gzipped):
        assert answer.status == 200, answer.body
        assert answer.json()["success"] is True
        assert answer.json().get("inserted", 0) == 0, answer.json()  # counts may come along
    assert {table: sql(f"select * from {SCHEMA}.{table} order by id") for table in CALL_TABLES} == stored
    check_six_calls_stored(sql, "segment-python", ids, when, (before, after))


@pytest_twisted.ensureDeferred
async def test_a_gzipped_batch_by_hand_with_a_message_twice_stores_it_once(segment_app, sql):
    ids, when = new_ids(), a_minute_ago()
    calls = six_calls(ids, when)
    body = batch_body(calls + [calls[1], calls[0]], datetime.now(timezone.utc))
    body["writeKey"] = KEY  # the key in the body instead of the Authorization header
    answer = await segment_app.client.request(
        "POST", "/v1/batch", gzip.compress(json.dumps(body).encode()),
        {"Content-Type": "text/plain", "Content-Encoding": "gzip"})
    assert answer.status == 200, answer.body
    assert answer.json()["success"] is True
    assert counts(sql) == {"tracks": 2, "identifies": 1, "pages": 1, "screens": 1, "groups": 1, "aliases": 1,
                           "level_completed": 1}
    assert rows(sql, "tracks", "event") == {ids[0]: ("level_completed",), ids[1]: ("button_clicked",)}


# Refusals: the SDK reports them and does not send the batch again


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("sdk", SDKS)
async def test_an_unknown_write_key_is_refused_once_and_reported(segment_app, sql, sdk):
    with AccessLog() as access:
        outcome = await send_with(sdk, url_of(segment_app), six_calls(new_ids(), a_minute_ago()),
                                  key="not-the-write-key-of-any-app")
    # The Python SDKs report the batch once, analytics-node each of its messages.
    assert outcome.errors and all("401" in error for error in outcome.errors), outcome.errors
    # Sent once: a refused key is not retried (rudder-sdk-python retries a 4xx unless its JSON has "code").
    assert [line["status"] for line in access.lines if line["method"] == "POST"] == [401]
    assert set(counts(sql).values()) == {0}


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("sdk", SDKS)
async def test_a_typed_event_with_a_wrong_value_refuses_the_batch_once(segment_app, sql, sdk):
    calls = six_calls(new_ids(), a_minute_ago())
    calls[0].arguments["properties"]["levelNumber"] = "three"
    with AccessLog() as access:
        outcome = await send_with(sdk, url_of(segment_app), calls)
    assert outcome.errors and all("400" in error for error in outcome.errors), outcome.errors
    assert [line["status"] for line in access.lines if line["method"] == "POST"] == [400]
    # All or nothing: none of the seven messages is stored.
    assert set(counts(sql).values()) == {0}
