"""Declared tables that grow: a column the table lacks is added at start-up when existing rows
allow it; nothing is dropped or retyped; check prints the ALTER; the DDL applies whole or not."""

import io

import pytest
import pytest_twisted

from attolytics.__main__ import check
from support.configs import SECRET

pytestmark = pytest.mark.service


def scores(*extra_columns: str) -> str:
    columns = "".join(f"      - {column}\n" for column in extra_columns)
    return (f"tables:\n  scores:\n    columns:\n      - {{name: player, type: text, required: true}}\n{columns}"
            f"apps:\n  - app_id: game\n    app_secret_key: {SECRET}\n    event_types: [{{event_type_id: scores}}]\n")


def columns(sql):
    return sql("select attname, format_type(atttypid, atttypmod), attnotnull, pg_get_expr(adbin, adrelid)"
               " from pg_attribute left join pg_attrdef on adrelid = attrelid and adnum = attnum"
               " where attrelid = 'scores'::regclass and attnum > 0 and not attisdropped order by attnum")


def run_check(tmp_path, config_text, database_url):
    (tmp_path / "app.yaml").write_text(config_text)
    out = io.StringIO()
    return check(str(tmp_path / "app.yaml"), database_url, out), out.getvalue()


@pytest_twisted.ensureDeferred
async def test_a_nullable_column_is_added_and_check_says_so_first(start, sql, tmp_path, database_url):
    sql("create table scores (player text not null)")
    sql("insert into scores values ('ann')")
    config = scores("{name: level, type: i32}", "{name: note, type: varchar(20)}")
    status, output = run_check(tmp_path, config, database_url)
    assert status == 0, output
    assert output.splitlines()[:2] == [
        'would run: ALTER TABLE "scores" ADD COLUMN IF NOT EXISTS "level" integer;',
        'would run: ALTER TABLE "scores" ADD COLUMN IF NOT EXISTS "note" character varying(20);']
    assert [c[0] for c in columns(sql)] == ["player"]  # check changed nothing
    running = await start(config)
    assert running.fatal == []
    assert columns(sql) == [("player", "text", True, None), ("level", "integer", False, None),
                            ("note", "character varying(20)", False, None)]
    answer = await running.client.post_events("game", "scores", [{"player": "bob", "level": 3}])
    assert answer.status == 200
    assert sql("select player, level from scores order by player") == [("ann", None), ("bob", 3)]
    assert run_check(tmp_path, config, database_url)[1].startswith("ok: ")


@pytest_twisted.ensureDeferred
async def test_a_required_column_with_a_default_is_added_to_a_table_with_rows(start, sql):
    sql("create table scores (player text not null)")
    sql("insert into scores values ('ann')")
    running = await start(scores("{name: level, type: i32, required: true, default: 1}",
                                 "{name: mode, type: text, required: true, default: \"it's easy\"}"))
    assert running.fatal == []
    assert columns(sql)[1:] == [("level", "integer", True, "1"), ("mode", "text", True, "'it''s easy'::text")]
    answer = await running.client.post_events("game", "scores", [{"player": "bob", "mode": "hard"}])
    assert answer.status == 200
    assert sql("select player, level, mode from scores order by player") == [
        ("ann", 1, "it's easy"), ("bob", 1, "hard")]


@pytest_twisted.ensureDeferred
async def test_a_required_column_without_a_default_cannot_be_added_to_a_table_with_rows(start, sql):
    sql("create table scores (player text not null)")
    sql("insert into scores values ('ann')")
    running = await start(scores("{name: level, type: i32, required: true}"))
    assert running.fatal == [
        "test.conf.yaml: table 'scores' exists but does not match its declaration: column 'level' (integer "
        "NOT NULL) is missing, and cannot be added to a table that has rows without a default"]
    assert [c[0] for c in columns(sql)] == ["player"]


@pytest_twisted.ensureDeferred
async def test_a_required_column_without_a_default_is_added_to_an_empty_table(start, sql):
    sql("create table scores (player text not null)")
    running = await start(scores("{name: level, type: i32, required: true}"))
    assert running.fatal == []
    assert columns(sql)[1] == ("level", "integer", True, None)


@pytest_twisted.ensureDeferred
async def test_a_new_table_gets_its_defaults(start, sql):
    running = await start(scores("{name: level, type: i32, required: true, default: 7}"))
    assert running.fatal == []
    assert (await running.client.post_events("game", "scores", [{"player": "ann"}])).status == 200
    assert sql("select level from scores") == [(7,)]


@pytest_twisted.ensureDeferred
async def test_a_default_that_is_not_a_value_of_the_type_is_refused_naming_the_key(start, sql):
    running = await start(scores("{name: level, type: i32, default: lots}"))
    assert running.fatal == ["test.conf.yaml: tables.scores.columns[1].default: 'lots' is not a value of "
                             "type integer: invalid input syntax for type integer: \"lots\""]
    assert sql("select to_regclass('scores')") == [(None,)]


@pytest_twisted.ensureDeferred
async def test_a_column_left_out_of_the_configuration_stays_and_is_no_longer_accepted(start, sql):
    first = await start(scores("{name: level, type: i32}"))
    assert (await first.client.post_events("game", "scores", [{"player": "ann", "level": 2}])).status == 200
    await first.stop()
    running = await start(scores())
    assert running.fatal == []
    assert [c[0] for c in columns(sql)] == ["player", "level"]
    refused = await running.client.post_events("game", "scores", [{"player": "bob", "level": 3}])
    assert refused.status == 400 and refused.json()["field"] == "level"
    assert "not declared" in refused.json()["error"]
    assert sql("select player, level from scores") == [("ann", 2)]


@pytest_twisted.ensureDeferred
async def test_a_changed_type_is_refused_not_altered(start, sql):
    sql("create table scores (player text not null, level int)")
    running = await start(scores("{name: level, type: i64}"))
    assert len(running.fatal) == 1 and "column 'level' is declared bigint but is integer" in running.fatal[0]
    assert columns(sql)[1][1] == "integer"


@pytest_twisted.ensureDeferred
async def test_the_statements_apply_all_or_none(start, sql):
    sql("create table scores (player text not null)")
    sql("insert into scores values ('ann'), ('ann')")
    # The column is added first; the unique index over two 'ann's then fails: neither stays.
    running = await start(scores("{name: level, type: i32}").replace(
        "{name: player, type: text, required: true}", "{name: player, type: text, required: true, unique: true}"))
    assert len(running.fatal) == 1 and "could not create unique index" in running.fatal[0]
    assert [c[0] for c in columns(sql)] == ["player"]
