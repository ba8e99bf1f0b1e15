"""The service heals by itself when its database connections die."""

import pytest
import pytest_twisted

from support.configs import START
from support.waiting import sleep

pytestmark = pytest.mark.service

KILL_OTHER_BACKENDS = (
    "select pg_terminate_backend(pid) from pg_stat_activity"
    " where datname = current_database() and pid <> pg_backend_pid()"
)


@pytest_twisted.ensureDeferred
async def test_killed_connections_are_replaced_without_a_restart(game, sql):
    assert (await game.client.post_events("mygame", "game_events", [START])).status == 200
    assert sql(KILL_OTHER_BACKENDS)
    acknowledged, statuses = 1, []
    for _ in range(100):
        answer = await game.client.post_events("mygame", "game_events", [START])
        statuses.append(answer.status)
        if answer.status == 200:
            acknowledged += 1
            if statuses.count(200) >= 3:
                break
        else:
            assert answer.status == 503, answer.body
            assert int(answer.headers["retry-after"]) > 0
        await sleep(0.1)
    assert statuses[-1] == 200, statuses
    assert sql("select count(*) from game_events")[0][0] == acknowledged
