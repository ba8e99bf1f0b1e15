import pytest_twisted


@pytest_twisted.ensureDeferred
async def test_seed_example_events_are_stored(seed, sql):
    answer = await seed.client.post_events("mygame", "game_events", [
        {"timestamp": 1554130180, "event_type": "game_start"},
        {"timestamp": 1554130213, "event_type": "game_end", "score": 42},
    ])
    assert answer.status == 200, answer.body
    assert answer.json() == {"inserted": 2}
    assert sql("select timestamp, event_type, score from game_events order by timestamp") == [
        (1554130180, "game_start", None),
        (1554130213, "game_end", 42),
    ]
