"""Unit tests for attolytics.config: both dialects of apps, the database section, and errors."""

import os
import textwrap

import pytest
from psycopg2.extensions import parse_dsn

from attolytics.config import (
    DEFAULT_LISTEN,
    DEFAULT_MAX_BODY_BYTES,
    ColumnDecl,
    ConfigError,
    load_config,
    parse_config,
)
from attolytics.storage.declarations import declared_types

pytestmark = pytest.mark.unit

SOURCE = "my.yaml"

MINIMAL_APPS = """
apps:
  - app_id: mygame
    app_secret_key: s3cret
"""


def parse(text, source=SOURCE):
    return parse_config(textwrap.dedent(text), source)


def read_whole(text, source=SOURCE):
    """Parse `text` as start-up reads it: the configuration, then the declared column types."""
    config = parse_config(text, source)
    declared_types(config)
    return config


def config_error(text, source=SOURCE) -> str:
    """Read `text` as start-up does, expect a ConfigError, and return its message."""
    with pytest.raises(ConfigError) as caught:
        read_whole(textwrap.dedent(text), source)
    return str(caught.value)


def with_apps(text):
    """A configuration made of `text` followed by a minimal, valid apps section."""
    return textwrap.dedent(text) + textwrap.dedent(MINIMAL_APPS)


# --- apps, the list form ----------------------------------------------------------------------


def test_list_form_app_has_its_id_secret_and_event_types():
    config = parse("""
        apps:
          - app_id: mygame
            app_secret_key: s3cret
            event_types:
              - event_type_id: game_events
              - event_type_id: clicks
                table: click_log
    """)
    app = config.apps["mygame"]
    assert app.app_id == "mygame"
    assert app.secret_key == b"s3cret"
    assert dict(app.event_types) == {"game_events": "game_events", "clicks": "click_log"}


def test_list_form_event_type_table_defaults_to_the_event_type_id():
    config = parse("""
        apps:
          - app_id: mygame
            app_secret_key: s3cret
            event_types:
              - event_type_id: game_events
    """)
    assert config.apps["mygame"].event_types["game_events"] == "game_events"


def test_list_form_app_without_event_types_has_none():
    config = parse(MINIMAL_APPS)
    assert dict(config.apps["mygame"].event_types) == {}


def test_list_form_keeps_several_apps_in_order():
    config = parse("""
        apps:
          - app_id: first
            app_secret_key: one
          - app_id: second
            app_secret_key: two
    """)
    assert list(config.apps) == ["first", "second"]
    assert config.apps["second"].secret_key == b"two"


def test_list_form_numeric_app_id_becomes_a_string():
    config = parse("""
        apps:
          - app_id: 42
            app_secret_key: s3cret
    """)
    assert list(config.apps) == ["42"]
    assert config.apps["42"].app_id == "42"


def test_map_form_numeric_app_id_becomes_a_string():
    config = parse("""
        apps:
          42: {secret_key: s3cret}
    """)
    assert list(config.apps) == ["42"]
    assert config.apps["42"].app_id == "42"


def test_numeric_secret_is_refused_with_a_hint_to_quote_it():
    message = config_error("""
        apps:
          - {app_id: a, app_secret_key: 12345}
    """)
    assert message.startswith("my.yaml: apps[0].app_secret_key: ")
    assert "quote" in message


def test_secret_key_is_utf8_bytes():
    config = parse("""
        apps:
          - app_id: mygame
            app_secret_key: "clé"
    """)
    assert config.apps["mygame"].secret_key == "clé".encode("utf-8")


# --- apps, the map form --------------------------------------------------------------------------


def test_map_form_app_has_its_secret_and_tables():
    config = parse("""
        apps:
          myapp:
            secret_key: s3cret
            tables: [a, b]
    """)
    app = config.apps["myapp"]
    assert app.app_id == "myapp"
    assert app.secret_key == b"s3cret"
    assert dict(app.event_types) == {"a": "a", "b": "b"}


def test_map_form_app_without_tables_has_none():
    config = parse("""
        apps:
          myapp:
            secret_key: s3cret
    """)
    assert dict(config.apps["myapp"].event_types) == {}


def test_map_form_keeps_several_apps():
    config = parse("""
        apps:
          first: {secret_key: one, tables: [a]}
          second: {secret_key: two, tables: [b]}
    """)
    assert list(config.apps) == ["first", "second"]
    assert config.apps["first"].secret_key == b"one"
    assert dict(config.apps["second"].event_types) == {"b": "b"}


def test_both_forms_give_the_same_app():
    listed = parse("""
        apps:
          - app_id: myapp
            app_secret_key: s3cret
            event_types:
              - event_type_id: a
              - event_type_id: b
    """)
    mapped = parse("""
        apps:
          myapp: {secret_key: s3cret, tables: [a, b]}
    """)
    assert listed.apps == mapped.apps


def test_table_names_lists_declared_and_used_tables_once():
    config = parse("""
        tables:
          declared: {columns: [{name: x}]}
        apps:
          - app_id: mygame
            app_secret_key: s3cret
            event_types:
              - event_type_id: one
                table: declared
              - event_type_id: two
              - event_type_id: three
                table: two
    """)
    assert config.table_names() == ["declared", "two"]


# --- database ------------------------------------------------------------------------------------


def test_database_url_is_kept_as_given():
    config = parse(with_apps("""
        database:
          url: postgresql://u:p@db.example.com:5432/events
    """))
    assert config.database.url == "postgresql://u:p@db.example.com:5432/events"
    assert config.database.embedded_path is None


def test_database_embedded_path_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = parse(with_apps("""
        database:
          embedded: some/data
    """))
    assert config.database.url is None
    assert config.database.embedded_path == str(tmp_path / "some" / "data")
    assert os.path.isabs(config.database.embedded_path)


def test_database_embedded_absolute_path_is_kept(tmp_path):
    target = tmp_path / "pgdata"
    config = parse(with_apps(f"""
        database:
          embedded: {target}
    """))
    assert config.database.embedded_path == str(target)


def test_database_server_keys_become_a_libpq_dsn():
    config = parse(with_apps("""
        database:
          host: localhost
          port: 5433
          user: attolytics
          password: "it's secret"
          database: analytics
    """))
    assert config.database.embedded_path is None
    assert parse_dsn(config.database.url) == {
        "host": "localhost",
        "port": "5433",
        "user": "attolytics",
        "password": "it's secret",
        "dbname": "analytics",
    }


def test_database_some_server_keys_give_only_those_in_the_dsn():
    config = parse(with_apps("""
        database:
          host: /var/run/postgresql
          database: analytics
    """))
    assert parse_dsn(config.database.url) == {"host": "/var/run/postgresql", "dbname": "analytics"}


def test_database_absent_means_embedded_in_attolytics_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = parse(MINIMAL_APPS)
    assert config.database.url is None
    assert config.database.embedded_path == str(tmp_path / "attolytics-data")


def test_database_empty_section_means_embedded_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = parse(with_apps("""
        database:
    """))
    assert config.database.url is None
    assert config.database.embedded_path == str(tmp_path / "attolytics-data")


# --- listen and max_body_bytes -------------------------------------------------------------------


def test_listen_defaults_to_localhost_port_8000():
    config = parse(MINIMAL_APPS)
    assert config.listen == DEFAULT_LISTEN == "tcp:8000:interface=127.0.0.1"


def test_listen_is_kept_as_given():
    config = parse(with_apps("""
        listen: tcp:9000:interface=0.0.0.0
    """))
    assert config.listen == "tcp:9000:interface=0.0.0.0"


def test_max_body_bytes_defaults_to_one_mebibyte():
    config = parse(MINIMAL_APPS)
    assert config.max_body_bytes == DEFAULT_MAX_BODY_BYTES == 1024 * 1024


def test_max_body_bytes_is_kept_as_given():
    config = parse(with_apps("""
        max_body_bytes: 4096
    """))
    assert config.max_body_bytes == 4096


def test_config_remembers_its_source():
    assert parse(MINIMAL_APPS, "elsewhere.yaml").path == "elsewhere.yaml"


# --- declared tables -----------------------------------------------------------------------------


def test_no_tables_section_declares_no_tables():
    assert dict(parse(MINIMAL_APPS).tables) == {}


def test_declared_table_keeps_its_columns_in_order():
    config = parse(with_apps("""
        tables:
          game_events:
            columns:
              - {name: timestamp, type: i64, required: true}
              - {name: event_type, type: string, required: true}
              - {name: score, type: i64}
    """))
    table = config.tables["game_events"]
    assert table.name == "game_events"
    assert table.columns == (
        ColumnDecl("timestamp", "i64", True),
        ColumnDecl("event_type", "string", True),
        ColumnDecl("score", "i64", False),
    )
    types = declared_types(config)["game_events"]
    assert [(name, t.ddl) for name, t in types.items()] == [
        ("timestamp", "bigint"), ("event_type", "character varying"), ("score", "bigint")]


@pytest.mark.parametrize(
    "type_name, ddl_type",
    [
        ("bool", "boolean"),
        ("i32", "integer"),
        ("i64", "bigint"),
        ("f32", "real"),
        ("f64", "double precision"),
        ("string", "character varying"),
        ("timestamp", "timestamp with time zone"),
    ],
)
def test_column_type_maps_to_its_ddl_type(type_name, ddl_type):
    config = parse(with_apps(f"""
        tables:
          t:
            columns:
              - {{name: c, type: {type_name}}}
    """))
    assert declared_types(config)["t"]["c"].ddl == ddl_type


def test_column_type_defaults_to_string():
    config = parse(with_apps("""
        tables:
          t:
            columns:
              - name: c
    """))
    assert declared_types(config)["t"]["c"].ddl == "character varying"


def test_column_required_defaults_to_false():
    config = parse(with_apps("""
        tables:
          t:
            columns:
              - {name: c, type: i32}
    """))
    assert config.tables["t"].columns[0].required is False


def test_column_required_true_is_kept():
    config = parse(with_apps("""
        tables:
          t:
            columns:
              - {name: c, type: i32, required: true}
    """))
    assert config.tables["t"].columns[0].required is True


# --- errors: each names the file and the key path -----------------------------------------------


def test_yaml_syntax_error_names_file_and_line():
    message = config_error("""
        apps:
          - app_id: mygame
            app_secret_key: [unclosed
    """)
    assert message.startswith(f"{SOURCE}: YAML syntax error")
    assert "line " in message


def test_yaml_syntax_error_reports_the_right_line():
    text = "listen: ok\napps:\n  - app_id: x\n   bad: indentation\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, SOURCE)
    message = str(caught.value)
    assert message.startswith(f"{SOURCE}: YAML syntax error at line 4")


def test_unknown_top_level_key_is_named():
    message = config_error(with_apps("""
        lisen: tcp:8000
    """))
    assert message.startswith(f"{SOURCE}: lisen: unknown key")
    assert "listen" in message  # the allowed keys are listed


def test_unknown_key_in_a_list_form_app_is_named():
    message = config_error("""
        apps:
          - app_id: mygame
            app_secret_key: s3cret
            colour: blue
    """)
    assert message.startswith(f"{SOURCE}: apps[0].colour: unknown key")


def test_unknown_key_in_a_map_form_app_is_named():
    message = config_error("""
        apps:
          myapp:
            secret_key: s3cret
            event_types: [a]
    """)
    assert message.startswith(f"{SOURCE}: apps.myapp.event_types: unknown key")


def test_missing_secret_in_list_form_is_named():
    message = config_error("""
        apps:
          - app_id: mygame
            event_types:
              - event_type_id: game_events
    """)
    assert message == f"{SOURCE}: apps[0].app_secret_key: missing (or list keys in app_secret_keys)"


def test_missing_secret_in_map_form_is_named():
    message = config_error("""
        apps:
          myapp:
            tables: [a]
    """)
    assert message == f"{SOURCE}: apps.myapp.secret_key: missing (or list keys in secret_keys)"


def test_missing_app_id_is_named():
    message = config_error("""
        apps:
          - app_secret_key: s3cret
    """)
    assert message == f"{SOURCE}: apps[0].app_id: missing"


@pytest.mark.parametrize("secret", ['""', '"   "', "", "[]"])
def test_empty_or_non_string_secret_is_refused(secret):
    message = config_error(f"""
        apps:
          - app_id: first
            app_secret_key: ok
          - app_id: mygame
            app_secret_key: {secret}
    """)
    assert message.startswith(f"{SOURCE}: apps[1].app_secret_key: ")


def test_empty_secret_in_map_form_is_refused():
    message = config_error("""
        apps:
          myapp:
            secret_key: ""
    """)
    assert message.startswith(f"{SOURCE}: apps.myapp.secret_key: ")


def test_duplicate_app_id_in_list_form_is_refused():
    message = config_error("""
        apps:
          - app_id: mygame
            app_secret_key: one
          - app_id: mygame
            app_secret_key: two
    """)
    assert message.startswith(f"{SOURCE}: apps[1]: ")
    assert "duplicate app id 'mygame'" in message


def test_duplicate_app_id_in_map_form_is_a_yaml_duplicate_key():
    text = "apps:\n  myapp:\n    secret_key: one\n  myapp:\n    secret_key: two\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, SOURCE)
    message = str(caught.value)
    assert message.startswith(f"{SOURCE}: ")
    assert "line 4" in message
    assert "duplicate key 'myapp'" in message
    assert "syntax error" not in message


def test_duplicate_key_anywhere_is_refused_rather_than_last_one_winning():
    text = "listen: tcp:1\nlisten: tcp:2\n" + MINIMAL_APPS
    with pytest.raises(ConfigError) as caught:
        parse_config(text, SOURCE)
    message = str(caught.value)
    assert message.startswith(f"{SOURCE}: ")
    assert "line 2" in message
    assert "duplicate key 'listen'" in message


def test_duplicate_event_type_is_refused():
    message = config_error("""
        apps:
          - app_id: mygame
            app_secret_key: s3cret
            event_types:
              - event_type_id: game_events
              - event_type_id: game_events
                table: other
    """)
    assert message.startswith(f"{SOURCE}: apps[0].event_types[1].event_type_id: ")
    assert "duplicate event type 'game_events'" in message


def test_duplicate_table_in_map_form_app_is_refused():
    message = config_error("""
        apps:
          myapp:
            secret_key: s3cret
            tables: [a, b, a]
    """)
    assert message.startswith(f"{SOURCE}: apps.myapp.tables[2]: ")


def test_unknown_column_type_is_refused():
    message = config_error(with_apps("""
        tables:
          t:
            columns:
              - {name: ok}
              - {name: c, type: point}
    """))
    assert message.startswith(f"{SOURCE}: tables.t.columns[1].type: ")
    assert "unknown column type 'point'" in message


@pytest.mark.parametrize("type_name", ["string", "text", "varchar(20)", "char(2)"])
def test_a_header_fills_a_string_column(type_name):
    config = read_whole(with_apps(f"""
        tables:
          t:
            columns:
              - {{name: c, type: "{type_name}", header: X-Thing}}
    """))
    assert config.tables["t"].columns[0].header == "X-Thing"


def test_a_header_fills_only_a_string_column():
    message = config_error(with_apps("""
        tables:
          t:
            columns:
              - {name: ok}
              - {name: c, type: i32, header: X-Thing}
    """))
    assert message == f"{SOURCE}: tables.t.columns[1].header: a header fills only string columns, not integer"


def test_a_header_name_is_an_http_token():
    message = config_error(with_apps("""
        tables:
          t:
            columns:
              - {name: c, header: "X Thing"}
    """))
    assert message == f"{SOURCE}: tables.t.columns[0].header: 'X Thing' is not an HTTP header name"


def test_duplicate_column_is_refused():
    message = config_error(with_apps("""
        tables:
          t:
            columns:
              - {name: c, type: i32}
              - {name: d}
              - {name: c, type: i64}
    """))
    assert message.startswith(f"{SOURCE}: tables.t.columns[2]: ")
    assert "column 'c' is declared twice" in message


def test_table_without_columns_is_refused():
    message = config_error(with_apps("""
        tables:
          t:
            columns: []
    """))
    assert message.startswith(f"{SOURCE}: tables.t.columns: ")


def test_column_without_name_is_refused():
    message = config_error(with_apps("""
        tables:
          t:
            columns:
              - {type: i32}
    """))
    assert message == f"{SOURCE}: tables.t.columns[0].name: missing"


def test_non_boolean_required_is_refused():
    message = config_error(with_apps("""
        tables:
          t:
            columns:
              - {name: c, required: "yes please"}
    """))
    assert message.startswith(f"{SOURCE}: tables.t.columns[0].required: ")


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "lots", "true"])
def test_max_body_bytes_must_be_a_positive_integer(value):
    message = config_error(with_apps(f"""
        max_body_bytes: {value}
    """))
    assert message.startswith(f"{SOURCE}: max_body_bytes: expected a positive integer")


def test_apps_missing_is_named():
    message = config_error("""
        listen: tcp:8000
    """)
    assert message == f"{SOURCE}: apps: missing"


def test_apps_empty_list_is_refused():
    message = config_error("""
        apps: []
    """)
    assert message.startswith(f"{SOURCE}: apps: ")


def test_apps_of_the_wrong_shape_is_refused():
    message = config_error("""
        apps: mygame
    """)
    assert message.startswith(f"{SOURCE}: apps: ")


def test_empty_document_is_refused_naming_the_file():
    message = config_error("")
    assert message.startswith(f"{SOURCE}: ")


def test_database_url_and_fields_together_are_refused():
    message = config_error(with_apps("""
        database:
          url: postgresql:///x
          host: localhost
    """))
    assert message.startswith(f"{SOURCE}: database: ")


def test_unknown_database_key_is_named():
    message = config_error(with_apps("""
        database:
          hostname: localhost
    """))
    assert message.startswith(f"{SOURCE}: database.hostname: unknown key")


@pytest.mark.parametrize("port", ["0", "65536", "'5432'"])
def test_database_port_must_be_a_port_number(port):
    message = config_error(with_apps(f"""
        database:
          host: localhost
          port: {port}
    """))
    assert message.startswith(f"{SOURCE}: database.port: ")


def test_non_string_database_field_is_named():
    message = config_error(with_apps("""
        database:
          user: [a, b]
    """))
    assert message.startswith(f"{SOURCE}: database.user: ")


# --- load_config ---------------------------------------------------------------------------------


def test_load_config_reads_the_file_and_names_it_as_source(tmp_path):
    path = tmp_path / "attolytics.yaml"
    path.write_text(MINIMAL_APPS, encoding="utf-8")
    config = load_config(str(path))
    assert config.path == str(path)
    assert list(config.apps) == ["mygame"]


def test_load_config_error_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("apps:\n  - app_id: mygame\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert str(caught.value) == f"{path}: apps[0].app_secret_key: missing (or list keys in app_secret_keys)"


def test_load_config_missing_file_names_the_file(tmp_path):
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "No such file or directory" in message


def test_load_config_non_utf8_file_names_the_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("apps: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert str(caught.value).startswith(f"{path}: ")


# --- error messages are for people, not tracebacks -----------------------------------------------

ERROR_CASES = [
    "apps: [unclosed\n",
    "apps:\n  myapp: {secret_key: a}\n  myapp: {secret_key: b}\n",
    "bogus: 1\n" + MINIMAL_APPS,
    "apps:\n  - app_id: x\n",
    "apps:\n  - {app_id: x, app_secret_key: s}\ntables:\n  t: {columns: [{name: c, type: nope}]}\n",
    "max_body_bytes: 0\n" + MINIMAL_APPS,
]


@pytest.mark.parametrize("text", ERROR_CASES)
def test_config_error_message_has_no_traceback_text(text):
    with pytest.raises(ConfigError) as caught:
        read_whole(text, SOURCE)
    message = str(caught.value)
    assert "Traceback" not in message
    assert 'File "' not in message
    assert "Error:" not in message  # no exception class names such as ConstructorError:
    assert "\n" not in message.strip()


@pytest.mark.parametrize("text", ERROR_CASES)
def test_config_error_does_not_chain_the_internal_exception(text):
    with pytest.raises(ConfigError) as caught:
        read_whole(text, SOURCE)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ or caught.value.__context__ is None


@pytest.mark.parametrize("written, sent", [
    ("https://game.example", "https://game.example"),
    ("HTTPS://Game.Example:443", "https://game.example"),
    ("http://game.example:80", "http://game.example"),
    ("http://game.example:8080", "http://game.example:8080"),
    ("https://bücher.example", "https://xn--bcher-kva.example"),
    ("http://[::1]:3000", "http://[::1]:3000"),
])
def test_origins_are_spelled_as_browsers_send_them(written, sent):
    config = parse(f"""
        apps:
          - app_id: web
            app_secret_key: s3cret
            access_control_allow_origin: "{written}"
        """)
    assert config.apps["web"].allowed_origins == frozenset({sent})


@pytest.mark.parametrize("written", [
    "game.example", "https://game.example/", "https://game.example/path", "https://user@game.example",
    "https://game.example:99999", "https://",
])
def test_what_is_not_an_origin_is_refused(written):
    message = config_error(f"""
        apps:
          - app_id: web
            app_secret_key: s3cret
            access_control_allow_origin: ["https://ok.example", "{written}"]
        """)
    assert f"apps[0].access_control_allow_origin[1]: {written!r} is not an origin" in message, message
