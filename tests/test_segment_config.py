"""The segment section of an app: what it declares, and each mistake named by file and key."""

import pytest

from attolytics.config import ConfigError, parse_config
from attolytics.http.segment_messages import snake_case
from attolytics.storage.declarations import declared_types

pytestmark = pytest.mark.unit

TABLES = """
tables:
  level_completed:
    columns:
      - {name: id, type: text, unique: true}
      - {name: level_number, type: integer}
"""
MAP_FORM = TABLES + """
apps:
  mygame:
    secret_key: write-key-0123456789
    tables: [level_completed]
    segment:
      schema: mygame
      events:
        Level Completed: level_completed
"""
LIST_FORM = TABLES + """
apps:
  - app_id: mygame
    app_secret_key: write-key-0123456789
    event_types:
      - event_type_id: level_completed
    segment: {schema: mygame, events: {Level Completed: level_completed}}
"""


@pytest.mark.parametrize("text", [MAP_FORM, LIST_FORM], ids=["map", "list"])
def test_both_forms_declare_the_call_tables_in_the_schema(text):
    config = parse_config(text, "app.yaml")
    segment = config.apps["mygame"].segment
    assert (segment.schema, dict(segment.events)) == ("mygame", {"Level Completed": "level_completed"})
    calls = ["tracks", "identifies", "pages", "screens", "groups", "aliases"]
    assert [name for name in config.tables if name.startswith("mygame.")] == [f"mygame.{c}" for c in calls]
    tracks = config.tables["mygame.tracks"]
    assert [c.name for c in tracks.columns] == ["id", "anonymous_id", "user_id", "received_at", "sent_at",
                                                "original_timestamp", "timestamp", "context", "event",
                                                "event_text", "properties"]
    assert [c.name for c in tracks.columns if c.unique] == ["id"]
    assert set(config.table_names()) >= {"level_completed", "mygame.aliases"}


@pytest.mark.parametrize("change, message", [
    (("unique: true", "indexed: true"),
     "app.yaml: apps.mygame.segment.events.Level Completed: table 'level_completed' needs a column 'id' with unique: true"),
    (("tables: [level_completed]", "tables: []"),
     "app.yaml: apps.mygame.segment.events.Level Completed: 'level_completed' is not one of app 'mygame''s tables"),
    (("schema: mygame", "schema: my.game"), "app.yaml: apps.mygame.segment.schema: 'my.game' is not a PostgreSQL schema name"),
    (("schema: mygame", "schema: 7"), "app.yaml: apps.mygame.segment.schema: expected a non-empty string, got 7"),
    (("      events:", "      colour: blue\n      events:"), "app.yaml: apps.mygame.segment.colour: unknown key"),
    (("    segment:\n      schema: mygame\n", "    segment:\n"), "app.yaml: apps.mygame.segment"),
])
def test_mistakes_name_the_file_and_the_key(change, message):
    with pytest.raises(ConfigError) as raised:
        parse_config(MAP_FORM.replace(*change), "app.yaml")
    assert str(raised.value).startswith(message), str(raised.value)


def test_a_typed_table_partitioned_by_a_time_a_resend_changes_is_refused():
    text = MAP_FORM.replace("      - {name: level_number, type: integer}\n", "      - {name: level_number, type: integer}\n"
                            "      - {name: timestamp, type: timestamptz, required: true}\n"
                            "    partition: {column: timestamp, interval: day, ahead: 1, keep: 7}\n")
    with pytest.raises(ConfigError, match="is partitioned by 'timestamp', which a resent message fills anew"):
        parse_config(text, "app.yaml")
    accepted = text.replace("name: timestamp,", "name: original_timestamp,").replace(
        "column: timestamp,", "column: original_timestamp,")
    assert parse_config(accepted, "app.yaml").tables["level_completed"].partition is not None


@pytest.mark.parametrize("change, message", [
    (("schema: mygame", "schema: pg_stats"), "PostgreSQL keeps schema names starting with pg_"),
    (("schema: mygame", "schema: public"), None),
])
def test_schemas_postgresql_keeps_or_that_clash_with_unqualified_tables(change, message):
    text = MAP_FORM.replace(*change)
    if message is not None:
        with pytest.raises(ConfigError, match=message):
            parse_config(text, "app.yaml")
        return
    assert "public.tracks" in parse_config(text, "app.yaml").tables
    clashing = text.replace("tables:\n", "tables:\n  tracks:\n    columns: [{name: x}]\n", 1)
    with pytest.raises(ConfigError, match="table 'public.tracks' is declared"):
        parse_config(clashing, "app.yaml")


def test_snake_case_as_segment_names_columns_in_time_linear_in_the_name():
    assert [snake_case(name) for name in ("Level Completed", "levelNumber", "HTTPStatus", "Order ID", "a--b", "V2API")] == [
        "level_completed", "level_number", "http_status", "order_id", "a_b", "v2_api"]
    # A long run of capitals took the former regular expressions seconds a name, on the reactor.
    assert snake_case("A" * 200_000 + "b") == "a" * 199_999 + "_ab"


@pytest.mark.parametrize("column, needs", [
    ("{name: received_at, type: text}", "needs timestamp with time zone, not text"),
    ("{name: sent_at, type: bigint}", "needs timestamp with time zone, not bigint"),
    ("{name: context, type: text}", "needs jsonb, not text"),
    ("{name: anonymous_id, type: uuid}", "needs text, not uuid"),
])
def test_a_typed_column_named_like_the_messages_own_holds_its_type(column, needs):
    text = MAP_FORM.replace("      - {name: level_number, type: integer}\n",
                            f"      - {{name: level_number, type: integer}}\n      - {column}\n")
    with pytest.raises(ConfigError, match=r"app.yaml: tables.level_completed.columns\[2\].type: table "
                                          r"'level_completed' takes the Segment message's \w+ here, which " + needs):
        declared_types(parse_config(text, "app.yaml"))
    fine = text.replace(column, "{name: context, type: json}")
    assert declared_types(parse_config(fine, "app.yaml"))["level_completed"]["context"].typname == "json"


def test_a_write_key_names_one_app_and_the_error_names_both():
    text = MAP_FORM + "  shop:\n    secret_key: write-key-0123456789\n    segment: {schema: shop}\n"
    with pytest.raises(ConfigError, match="apps 'mygame' and 'shop' have the same key"):
        parse_config(text, "app.yaml")


def test_a_declared_table_in_the_way_of_a_call_table_is_named():
    text = MAP_FORM.replace("tables:\n", "tables:\n  mygame.tracks:\n    columns: [{name: x}]\n", 1)
    with pytest.raises(ConfigError, match=r"apps.mygame.segment.schema: table 'mygame.tracks' is declared"):
        parse_config(text, "app.yaml")
