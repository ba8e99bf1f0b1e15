"""Start-up and `check` walk the tables the same way: check prints what start-up would run, start-up
runs it only when nothing stands in the way, and a table in another schema is found with its index."""

import io

import pytest
import pytest_twisted

from attolytics.__main__ import check
from support.configs import SECRET

pytestmark = pytest.mark.service

IN_A_SCHEMA = f"""
tables:
  analytics.events:
    columns:
      - {{name: ts, type: timestamp, required: true, indexed: true}}
      - {{name: kind, type: text}}
apps:
  - app_id: app
    app_secret_key: {SECRET}
    event_types: [{{event_type_id: events, table: analytics.events}}]
"""


def run_check(tmp_path, config_text, database_url) -> tuple[int, str]:
    """`python -m attolytics check`, in this process: (exit status, what it printed)."""
    (tmp_path / "app.yaml").write_text(config_text)
    out = io.StringIO()
    status = check(str(tmp_path / "app.yaml"), database_url, out)
    return status, out.getvalue()


@pytest_twisted.ensureDeferred
async def test_check_finds_the_index_of_a_declared_table_in_another_schema(start, sql, tmp_path, database_url):
    sql("create schema analytics")
    status, before = run_check(tmp_path, IN_A_SCHEMA, database_url)
    assert status == 0, before
    assert 'would run: CREATE TABLE IF NOT EXISTS "analytics"."events"' in before
    assert 'would run: CREATE INDEX IF NOT EXISTS "events_ts_idx" ON "analytics"."events"' in before
    running = await start(IN_A_SCHEMA)
    assert running.fatal == []
    assert sql("select schemaname, indexname from pg_indexes where tablename = 'events'") == [
        ("analytics", "events_ts_idx")]
    # Once start-up made them, nothing is left to do: the index is looked for in the table's
    # schema, not on the search path (which has no "events_ts_idx").
    status, after = run_check(tmp_path, IN_A_SCHEMA, database_url)
    assert (status, after) == (0, f"ok: {tmp_path / 'app.yaml'} fits the database (1 table)\n")


def test_an_index_of_that_name_on_the_search_path_is_not_taken_for_it(sql, tmp_path, database_url):
    sql("create schema analytics")
    sql("create table analytics.events (ts timestamptz not null, kind text)")
    sql("create table public.events (ts timestamptz)")
    sql("create index events_ts_idx on public.events (ts)")
    status, output = run_check(tmp_path, IN_A_SCHEMA, database_url)
    assert status == 0, output
    assert output.splitlines()[0] == (
        'would run: CREATE INDEX IF NOT EXISTS "events_ts_idx" ON "analytics"."events" ("ts");')


MISMATCH_AFTER_A_MISSING_TABLE = f"""
tables:
  fresh:
    columns:
      - {{name: n, type: i64, required: true, indexed: true}}
  existing:
    columns:
      - {{name: n, type: i64}}
apps:
  - app_id: app
    app_secret_key: {SECRET}
    event_types: [{{event_type_id: fresh}}, {{event_type_id: existing}}]
"""


@pytest_twisted.ensureDeferred
async def test_a_refused_start_up_creates_nothing(start, sql, tmp_path, database_url):
    sql("create table existing (n text)")
    status, output = run_check(tmp_path, MISMATCH_AFTER_A_MISSING_TABLE, database_url)
    assert status == 1
    assert "would run: CREATE TABLE IF NOT EXISTS \"fresh\"" in output
    assert f"problem: {tmp_path / 'app.yaml'}: table 'existing': column 'n' is declared bigint but is text" in output
    running = await start(MISMATCH_AFTER_A_MISSING_TABLE)
    assert len(running.fatal) == 1 and "table 'existing' exists but does not match" in running.fatal[0]
    # The table planned before the mismatch was found is not made: a refused start changes nothing.
    assert sql("select to_regclass('fresh')") == [(None,)]


@pytest_twisted.ensureDeferred
async def test_start_up_runs_exactly_what_check_prints(start, sql, tmp_path, database_url):
    status, output = run_check(tmp_path, MISMATCH_AFTER_A_MISSING_TABLE, database_url)
    assert status == 0, output
    planned = [line.removeprefix("would run: ").removesuffix(";")
               for line in output.splitlines() if line.startswith("would run: ")]
    assert len(planned) == 3  # two tables, one index
    sql("create table witness (statement text)")
    sql("create function remember() returns event_trigger language plpgsql as $$ begin "
        "insert into witness values (current_query()); end $$")
    sql("create event trigger remember on ddl_command_end execute function remember()")
    running = await start(MISMATCH_AFTER_A_MISSING_TABLE)
    assert running.fatal == []
    assert [statement for (statement,) in sql("select statement from witness")] == planned
