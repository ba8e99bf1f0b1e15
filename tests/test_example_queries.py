"""contrib/example_queries.sql, each query run on events stored through the service (the app and
the event type filled by it), gives the answer a reader of it expects."""

import datetime
from pathlib import Path

import pytest
import pytest_twisted

from support.configs import SECRET

pytestmark = pytest.mark.service

QUERIES = Path(__file__).resolve().parent.parent / "contrib" / "example_queries.sql"

CONFIG = f"""
tables:
  events:
    columns:
      - {{name: at, type: timestamptz, required: true}}
      - {{name: app, type: string, source: app_id, required: true}}
      - {{name: kind, type: string, source: event_type, required: true}}
      - {{name: player, type: string, required: true}}
apps:
  - app_id: game
    app_secret_key: {SECRET}
    event_types:
      - {{event_type_id: session_start, table: events}}
      - {{event_type_id: level_up, table: events}}
      - {{event_type_id: purchase, table: events}}
  - app_id: web
    app_secret_key: {SECRET}
    event_types: [{{event_type_id: session_start, table: events}}, {{event_type_id: level_up, table: events}}]
"""

# (app, event type, player, when); 2026-11-02 is a Monday.
EVENTS = [
    ("game", "session_start", "p1", "2026-11-02T10:00:00Z"),
    ("game", "level_up", "p1", "2026-11-03T10:00:00Z"),
    ("game", "purchase", "p1", "2026-11-04T10:00:00Z"),
    ("game", "session_start", "p1", "2026-11-09T10:00:00Z"),
    ("game", "session_start", "p2", "2026-11-02T12:00:00Z"),
    ("game", "level_up", "p2", "2026-11-17T12:00:00Z"),  # 15 days after its first session
    ("web", "session_start", "p3", "2026-11-10T10:00:00Z"),
    ("web", "level_up", "p3", "2026-11-10T11:00:00Z"),
]


def queries() -> dict[str, str]:
    """The file's queries by the name each one's `-- name:` line gives."""
    found = {}
    for part in QUERIES.read_text().split("-- name: ")[1:]:
        name, _, text = part.partition("\n")
        found[name.strip()] = text
    return found


def day(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.timezone.utc)


@pytest_twisted.ensureDeferred
async def test_each_example_query_answers_as_its_comment_says(start, sql):
    running = await start(CONFIG)
    for app, kind, player, at in EVENTS:
        answer = await running.client.post_events(app, kind, [{"at": at, "player": player}])
        assert answer.status == 200, answer.body
    sql("SET TIME ZONE 'UTC'")
    found = queries()
    assert sorted(found) == ["daily active players", "events per day", "funnel", "retention by cohort"]
    assert sql(found["funnel"]) == [(3, 2, 1)]
    assert [(row[0].date().isoformat(), row[1], row[2], float(row[3])) for row in sql(found["retention by cohort"])] == [
        ("2026-11-02", 0, 2, 100.0), ("2026-11-02", 1, 1, 50.0), ("2026-11-02", 2, 1, 50.0),
        ("2026-11-09", 0, 1, 100.0)]
    assert sql(found["daily active players"]) == [
        (day("2026-11-02"), "game", 2), (day("2026-11-03"), "game", 1), (day("2026-11-04"), "game", 1),
        (day("2026-11-09"), "game", 1), (day("2026-11-10"), "web", 1), (day("2026-11-17"), "game", 1)]
    assert sql(found["events per day"]) == [
        (day("2026-11-02"), "session_start", 2), (day("2026-11-03"), "level_up", 1),
        (day("2026-11-04"), "purchase", 1), (day("2026-11-09"), "session_start", 1),
        (day("2026-11-10"), "level_up", 1), (day("2026-11-10"), "session_start", 1),
        (day("2026-11-17"), "level_up", 1)]
