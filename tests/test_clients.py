"""What clients beyond curl need, end to end: a key in a Bearer header, beacons, compressed
bodies, each stored. Their refusals, and keys being rotated, are in test_routes_in_memory."""

import gzip
import json
import zlib

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred

from support.configs import NEW_KEY, ROTATING_CONFIG, SECRET, START

pytestmark = pytest.mark.service

ROUTE = "/apps/mygame/events/game_events"


@pytest.fixture
def rotating(start):
    return pytest_twisted.blockon(ensureDeferred(start(ROTATING_CONFIG)))


def body(events=(START,), key=SECRET) -> bytes:
    document = {"events": list(events)}
    if key is not None:
        document["secret_key"] = key
    return json.dumps(document).encode()


async def post(running, data: bytes, headers: dict, path=ROUTE):
    return await running.client.request("POST", path, data, headers)


JSON = {"Content-Type": "application/json"}


# Keys


@pytest_twisted.ensureDeferred
async def test_bearer_token_instead_of_secret_key(rotating, sql):
    answer = await post(rotating, body(key=None), dict(JSON, Authorization=f"Bearer {NEW_KEY}"))
    assert answer.status == 200
    assert sql("select count(*) from game_events")[0][0] == 1


# Beacons: text/plain


@pytest.mark.parametrize("path", [ROUTE, "/apps/mygame/events"])
@pytest.mark.parametrize("content_type", ["text/plain", "text/plain;charset=UTF-8"])
@pytest_twisted.ensureDeferred
async def test_text_plain_body_is_taken_as_json(rotating, sql, path, content_type):
    events = [START] if path == ROUTE else [dict(START, _t="game_events")]
    answer = await post(rotating, body(events), {"Content-Type": content_type}, path)
    assert (answer.status, answer.json()) == (200, {"inserted": 1})


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
    answer = await post(rotating, compress(body([START] * 3)), dict(JSON, **{"Content-Encoding": encoding}))
    assert (answer.status, answer.json()) == (200, {"inserted": 3})
