"""`python -m attolytics check`: what start-up would do, without serving or changing anything."""

import subprocess
import sys

import pytest

from support.configs import DECLARED_CONFIG

pytestmark = pytest.mark.twistd

MISSING_TABLE = DECLARED_CONFIG.replace("tables: [sessions, purchases]", "tables: [sessions, purchases, clicks]")


def check(tmp_path, config_text, database_url):
    """`python -m attolytics check` (not twistd: a command of its own) on this configuration."""
    (tmp_path / "app.yaml").write_text(config_text)
    return subprocess.run(
        [sys.executable, "-m", "attolytics", "check", "--config", "app.yaml", "--db-url", database_url],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )


def test_empty_database_prints_the_ddl_and_creates_nothing(tmp_path, database_url, sql):
    result = check(tmp_path, DECLARED_CONFIG, database_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'would run: CREATE TABLE IF NOT EXISTS "sessions"' in result.stdout
    assert 'would run: CREATE INDEX IF NOT EXISTS "sessions_ts_idx"' in result.stdout
    assert "ok: app.yaml fits the database" in result.stdout
    assert sql("select to_regclass('sessions')") == [(None,)]


def test_every_problem_is_named_and_the_status_is_1(tmp_path, database_url, sql):
    sql("create table sessions (ts bigint not null, player varchar(20), level int, user_agent varchar)")
    result = check(tmp_path, MISSING_TABLE, database_url)
    assert result.returncode == 1
    assert "problem: app.yaml: table 'sessions': column 'ts' is declared timestamp with time zone but is bigint" in result.stdout
    assert "problem: app.yaml: table 'clicks'" in result.stdout and "does not exist" in result.stdout
    assert 'would run: CREATE TABLE IF NOT EXISTS "purchases"' in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_existing_matching_tables_need_nothing(tmp_path, database_url, sql):
    assert check(tmp_path, DECLARED_CONFIG, database_url).returncode == 0
    # Let the service create the tables by running the DDL check printed, then check again.
    for line in check(tmp_path, DECLARED_CONFIG, database_url).stdout.splitlines():
        if line.startswith("would run: "):
            sql(line.removeprefix("would run: "))
    again = check(tmp_path, DECLARED_CONFIG, database_url)
    assert again.returncode == 0
    assert "would run" not in again.stdout


def test_config_mistake_is_a_problem(tmp_path, database_url):
    result = check(tmp_path, "apps: [\n", database_url)
    assert result.returncode == 1
    assert result.stdout.startswith("problem: app.yaml: YAML syntax error")
