"""Reloading the configuration in a running service: what a new file says applies at once, tables
made ready first; a file with any mistake is refused whole; what only a restart changes stays."""

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred

from support.configs import SECRET, scores_app
from support.metrics import scrape, value
from support.waiting import wait_for

pytestmark = pytest.mark.service

NEW_KEY = "a-newer-key-for-game"


async def post(running, table, events, key=SECRET, app="game"):
    return await running.client.request("POST", f"/apps/{app}/events/{table}",
                                        {"secret_key": key, "events": events})


@pytest.fixture
def config_file(tmp_path):
    return tmp_path / "app.yaml"


@pytest_twisted.ensureDeferred
async def test_a_new_app_key_event_type_and_column_apply_at_once(start, sql, config_file):
    running = await start(scores_app(tables=("scores",)), path=config_file)
    assert (await post(running, "scores", [{"player": "ann"}])).status == 200
    config_file.write_text(scores_app(keys=(SECRET, NEW_KEY), tables=("scores", "clicks"), columns=["{name: level, type: i32}"],
                                apps="  shop:\n    secret_key: shop-key\n    tables: [clicks]\n"))
    assert await running.service.reload() is True
    assert (await post(running, "scores", [{"player": "bob", "level": 3}], key=NEW_KEY)).status == 200
    assert (await post(running, "scores", [{"player": "cy"}], key=SECRET)).status == 200  # still listed
    assert (await post(running, "clicks", [{"button": "buy"}])).status == 200
    assert (await post(running, "clicks", [{"button": "sell"}], key="shop-key", app="shop")).status == 200
    assert sql("select player, level from scores order by player") == [("ann", None), ("bob", 3), ("cy", None)]
    assert sql("select button from clicks order by button") == [("buy",), ("sell",)]
    # The key rotated out is refused once a reload leaves it out.
    config_file.write_text(scores_app(keys=(NEW_KEY,)))
    assert await running.service.reload() is True
    assert (await post(running, "scores", [{"player": "dan"}], key=SECRET)).status == 403
    assert (await post(running, "scores", [{"player": "dan"}], key=NEW_KEY)).status == 200


@pytest.mark.parametrize("broken", [
    "apps: [\n",
    "colour: blue\n" + scores_app(),
    scores_app(columns=["{name: level, type: point}"]),
], ids=["yaml", "unknown-key", "unknown-type"])
@pytest_twisted.ensureDeferred
async def test_a_file_with_a_mistake_is_refused_whole(start, sql, config_file, broken):
    running = await start(scores_app(), path=config_file)
    config_file.write_text(broken)
    assert await running.service.reload() is False
    assert (await post(running, "scores", [{"player": "ann"}])).status == 200
    metrics = await scrape(running.client)
    assert value(metrics, "attolytics_config_reloads_total", result="refused") == 1


@pytest_twisted.ensureDeferred
async def test_a_table_that_does_not_fit_refuses_the_reload_and_changes_nothing(start, sql, config_file):
    running = await start(scores_app(), path=config_file)
    sql("create table sales (amount text)")
    config_file.write_text(scores_app(keys=(NEW_KEY,)).replace(
        "  clicks:\n", "  sales:\n    columns:\n      - {name: amount, type: i64}\n  clicks:\n"))
    assert await running.service.reload() is False
    # The old configuration is in force: its key works, the new one does not.
    assert (await post(running, "scores", [{"player": "ann"}])).status == 200
    assert (await post(running, "scores", [{"player": "ann"}], key=NEW_KEY)).status == 403


@pytest_twisted.ensureDeferred
async def test_a_new_table_is_made_before_the_configuration_takes_effect(start, sql, config_file):
    running = await start(scores_app(), path=config_file)
    config_file.write_text(scores_app(tables=("scores", "clicks"), columns=["{name: level, type: i32, indexed: true}"]))
    assert await running.service.reload() is True
    assert sql("select to_regclass('clicks') is not null") == [(True,)]
    assert sql("select indexname from pg_indexes where tablename = 'scores'") == [("scores_level_idx",)]


@pytest_twisted.ensureDeferred
async def test_what_only_a_restart_changes_stays_and_the_rest_applies(start, sql, config_file):
    running = await start(scores_app(), path=config_file)
    port = running.port
    config_file.write_text(scores_app(extra="listen: tcp:1:interface=127.0.0.1\nmax_body_bytes: 100\n"
                                      "writer: {connections: 5}\ndatabase_url: postgresql://nobody@/nowhere\n"))
    assert await running.service.reload() is True
    assert running.port == port
    assert running.service.getServiceNamed("database").pool.size == 2
    big = await post(running, "scores", [{"player": "x" * 200}])
    assert big.status == 413  # the new body limit applies
    assert (await post(running, "scores", [{"player": "ann"}])).status == 200  # the same database


@pytest_twisted.ensureDeferred
async def test_the_metrics_count_reloads_and_say_when_the_configuration_was_loaded(start, config_file):
    running = await start(scores_app(), path=config_file)
    before = value(await scrape(running.client), "attolytics_config_loaded_timestamp_seconds")
    assert before > 0
    assert await running.service.reload() is True
    metrics = await scrape(running.client)
    assert value(metrics, "attolytics_config_reloads_total", result="applied") == 1
    assert value(metrics, "attolytics_config_loaded_timestamp_seconds") > before


@pytest_twisted.ensureDeferred
async def test_a_reload_before_the_database_is_ready_is_used_when_it_is(start, own_postgres, config_file):
    await own_postgres.kill()
    running = await start(scores_app(), url=own_postgres.url, wait=False, path=config_file)
    config_file.write_text(scores_app(keys=(NEW_KEY,), tables=("scores", "clicks")))
    assert await running.service.reload() is True
    await own_postgres.start()
    await wait_for(lambda: running.writer is not None, seconds=30, what="the service ready")
    assert (await post(running, "clicks", [{"button": "go"}], key=NEW_KEY)).status == 200
    assert own_postgres.count("select button from clicks") == [("go",)]


@pytest_twisted.ensureDeferred
async def test_refused_events_kept_from_a_reload_on(start, sql, config_file):
    running = await start(scores_app(), path=config_file)
    config_file.write_text(scores_app(extra="rejected_events: refused\n"))
    assert await running.service.reload() is True
    assert (await post(running, "scores", [{"player": 5}])).status == 400
    await wait_for(lambda: sql("select count(*) from refused")[0][0] == 1, what="the refused event kept")


@pytest_twisted.ensureDeferred
async def test_rows_queued_before_a_reload_are_written_under_the_old_one(start, sql, config_file):
    running = await start(scores_app(), path=config_file)
    sql("begin")
    sql("lock table scores in access exclusive mode")
    pending = ensureDeferred(post(running, "scores", [{"player": "ann"}]))
    await wait_for(lambda: running.writer.queued_rows == 1, what="the request queued")
    config_file.write_text(scores_app(keys=(NEW_KEY,)).replace("  game:", "  other:"))  # the app is gone
    assert await running.service.reload() is True
    sql("commit")
    assert (await pending).status == 200
    assert sql("select player from scores") == [("ann",)]
    assert (await post(running, "scores", [{"player": "bob"}])).status == 404
