"""What clients beyond curl need: keys in a header, rotated keys, beacons, compressed bodies."""

import gzip
import json
import zlib

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred

from support.configs import SECRET

pytestmark = pytest.mark.service

NEW_KEY = "the-new-key"
ROTATING = f"""
tables:
  game_events:
    columns:
      - {{name: timestamp, type: i64, required: true}}
      - {{name: event_type, type: string, required: true}}
apps:
  mygame:
    secret_keys: [{SECRET}, {NEW_KEY}]
    tables: [game_events]
"""
EVENT = {"timestamp": 1554130180, "event_type": "game_start"}
ROUTE = "/apps/mygame/events/game_events"


@pytest.fixture
def rotating(start):
    return pytest_twisted.blockon(ensureDeferred(start(ROTATING)))


def body(events=(EVENT,), key=SECRET) -> bytes:
    document = {"events": list(events)}
    if key is not None:
        document["secret_key"] = key
    return json.dumps(document).encode()


async def post(running, data: bytes, headers: dict, path=ROUTE):
    return await running.client.request("POST", path, data, headers)


JSON = {"Content-Type": "application/json"}


# Keys


@pytest.mark.parametrize("key", [SECRET, NEW_KEY])
@pytest_twisted.ensureDeferred
async def test_every_listed_key_is_accepted_while_rotating(rotating, sql, key):
    answer = await post(rotating, body(key=key), JSON)
    assert (answer.status, answer.json()) == (200, {"inserted": 1})


@pytest_twisted.ensureDeferred
async def test_bearer_token_instead_of_secret_key(rotating, sql):
    answer = await post(rotating, body(key=None), dict(JSON, Authorization=f"Bearer {NEW_KEY}"))
    assert answer.status == 200
    assert sql("select count(*) from game_events")[0][0] == 1


@pytest.mark.parametrize(
    "authorization, status",
    [("Bearer wrong", 403), ("Basic dXNlcjpwYXNz", 401), ("Bearer ", 401)],
)
@pytest_twisted.ensureDeferred
async def test_bad_authorization_header(rotating, sql, authorization, status):
    answer = await post(rotating, body(key=None), dict(JSON, Authorization=authorization))
    assert answer.status == status
    assert sql("select count(*) from game_events")[0][0] == 0


@pytest_twisted.ensureDeferred
async def test_body_key_and_bearer_must_both_be_right(rotating, sql):
    answer = await post(rotating, body(key=SECRET), dict(JSON, Authorization="Bearer wrong"))
    assert answer.status == 403


@pytest_twisted.ensureDeferred
async def test_no_key_anywhere_is_401(rotating):
    answer = await post(rotating, body(key=None), JSON)
    assert answer.status == 401 and "Bearer" in answer.json()["error"]


# Beacons: text/plain


@pytest.mark.parametrize("path", [ROUTE, "/apps/mygame/events"])
@pytest.mark.parametrize("content_type", ["text/plain", "text/plain;charset=UTF-8"])
@pytest_twisted.ensureDeferred
async def test_text_plain_body_is_taken_as_json(rotating, sql, path, content_type):
    events = [EVENT] if path == ROUTE else [dict(EVENT, _t="game_events")]
    answer = await post(rotating, body(events), {"Content-Type": content_type}, path)
    assert (answer.status, answer.json()) == (200, {"inserted": 1})


@pytest_twisted.ensureDeferred
async def test_text_plain_that_is_not_json_is_400(rotating):
    answer = await post(rotating, b"hello", {"Content-Type": "text/plain"})
    assert answer.status == 400


# Compressed bodies


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    "encoding, compress",
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("deflate", raw_deflate), ("GZIP", gzip.compress)],
)
@pytest_twisted.ensureDeferred
async def test_compressed_bodies_are_inflated(rotating, sql, encoding, compress):
    answer = await post(rotating, compress(body([EVENT] * 3)), dict(JSON, **{"Content-Encoding": encoding}))
    assert (answer.status, answer.json()) == (200, {"inserted": 3})


@pytest_twisted.ensureDeferred
async def test_a_small_bomb_is_413_without_inflating_it_all(start, sql):
    running = await start(ROTATING + "max_body_bytes: 10000\n")
    bomb = gzip.compress(b"[" + b" " * 5_000_000 + b"]")  # 5 MB of spaces, ~5 KB packed
    assert len(bomb) < 10_000
    answer = await post(running, bomb, dict(JSON, **{"Content-Encoding": "gzip"}))
    assert answer.status == 413 and "inflates past" in answer.json()["error"]


@pytest.mark.parametrize(
    "encoding, data, status",
    [
        ("gzip", gzip.compress(body())[:-10], 400),   # cut short
        ("gzip", gzip.compress(body()) + b"junk", 400),  # trailing bytes
        ("gzip", b"not gzip at all", 400),
        ("br", b"whatever", 415),
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_compressed_bodies(rotating, sql, encoding, data, status):
    answer = await post(rotating, data, dict(JSON, **{"Content-Encoding": encoding}))
    assert answer.status == status
    assert answer.json()["error"]
    assert sql("select count(*) from game_events")[0][0] == 0
