"""An empty batch is answered as the route's other batches are: with `duplicates` when the route's
table (on the `_t` route, any of the app's tables) skips duplicates, and the OpenAPI document
says so. In memory."""

import json

import pytest

from support.memory import InMemoryService
from support.openapi import resolve

pytestmark = pytest.mark.unit

KEY = "empty-batch-key"
CONFIG = f"""
tables:
  clicks:
    columns:
      - {{name: id, type: uuid, unique: true}}
      - {{name: page, type: text}}
  scores:
    columns:
      - {{name: score, type: i64}}
apps:
  game:
    secret_key: {KEY}
    tables: [clicks, scores]
  board:
    secret_key: {KEY}
    tables: [scores]
"""


@pytest.fixture
def service():
    return InMemoryService(CONFIG)


@pytest.mark.parametrize("path, answer", [
    ("/apps/game/events/clicks", {"inserted": 0, "duplicates": 0}),
    ("/apps/game/events/scores", {"inserted": 0}),
    ("/apps/game/events", {"inserted": 0, "duplicates": 0}),
    ("/apps/board/events", {"inserted": 0}),
])
def test_an_empty_batch_carries_duplicates_when_the_routes_tables_skip_them(service, path, answer):
    sent = service.post(path, {"secret_key": KEY, "events": []})
    assert (sent.status, sent.json()) == (200, answer)
    assert sent.headers["content-type"] == "application/json"
    assert service.writer.inserts == []


def test_the_document_says_when_duplicates_is_in_the_answer(service):
    document = json.loads(service.request("GET", "/openapi.json").body)

    def inserted(path):
        answer = document["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]
        return resolve(document, answer["schema"])

    # A table that skips duplicates: every answer of its route has them, an empty batch's too.
    assert "duplicates" in inserted("/apps/game/events/clicks")["required"]
    assert "duplicates" not in inserted("/apps/game/events/scores")["required"]
    for path in ("/apps/game/events", "/apps/board/events"):
        schema = inserted(path)
        assert "duplicates" not in schema["required"]
        assert "empty" in schema["properties"]["duplicates"]["description"]
