"""Configurations and events the tests share."""

SECRET = "s3cret-key"
# The key of example.conf.yaml, which tests that run twistd on it send.
EXAMPLE_KEY = "change-me-to-a-long-random-string"

# The game_events table of the README, declared.
GAME_TABLES = """
tables:
  game_events:
    columns:
      - {name: timestamp, type: i64, required: true}
      - {name: event_type, type: string, required: true}
      - {name: score, type: i64}
"""

# That table and one list-form app, mygame, writing to it.
GAME_CONFIG = GAME_TABLES + f"""
apps:
  - app_id: mygame
    app_secret_key: {SECRET}
    event_types:
      - event_type_id: game_events
"""

# The README's two events.
GAME_EVENTS = [
    {"timestamp": 1554130180, "event_type": "game_start"},
    {"timestamp": 1554130213, "event_type": "game_end", "score": 42},
]
START = GAME_EVENTS[0]

GAME_KEY, OPEN_KEY = "game-key", "open-key"
GAME_ORIGIN = "https://game.example"

# Two map-form apps and two declared tables, one with a header column and indexes.
DECLARED_CONFIG = f"""
tables:
  sessions:
    columns:
      - {{name: ts, type: timestamp, required: true, indexed: true}}
      - {{name: player, type: varchar(20), indexed: true}}
      - {{name: level, type: i32}}
      - {{name: user_agent, header: User-Agent}}
  purchases:
    columns:
      - {{name: ts, type: timestamp, required: true}}
      - {{name: amount, type: "numeric(10,2)", required: true}}
      - {{name: country, type: text, header: X-Country, required: true}}
apps:
  game:
    secret_key: {GAME_KEY}
    access_control_allow_origin: [{GAME_ORIGIN}, https://www.game.example]
    tables: [sessions, purchases]
  open:
    secret_key: {OPEN_KEY}
    tables: [sessions]
"""

# Events of DECLARED_CONFIG's two tables, for the `_t` route; purchases need the X-Country header.
SESSION = {"_t": "sessions", "ts": "2019-04-01T15:09:40Z", "player": "ann", "level": 3}
PURCHASE = {"_t": "purchases", "ts": 1554130180, "amount": 9.99}
COUNTRY = {"X-Country": "NL"}

NEW_KEY = "the-new-key"
# The game_events table, and a map-form app whose key is being rotated: both keys are listed.
ROTATING_CONFIG = f"""
tables:
  game_events:
    columns:
      - {{name: timestamp, type: i64, required: true}}
      - {{name: event_type, type: string, required: true}}
apps:
  mygame:
    secret_keys: [{SECRET}, {NEW_KEY}]
    tables: [game_events]
"""


def scores_app(keys=(SECRET,), tables=("scores",), columns=(), apps="", extra=""):
    """A map-form app, game, with `keys`, over `tables` of two declared ones, scores and clicks;
    `columns` are added to scores, `apps` after game, and `extra` (top-level keys) before."""
    score_columns = "".join(f"      - {column}\n" for column in columns)
    return f"""{extra}
tables:
  scores:
    columns:
      - {{name: player, type: text, required: true}}
{score_columns}  clicks:
    columns:
      - {{name: button, type: text, required: true}}
apps:
  game:
    secret_keys: [{", ".join(keys)}]
    tables: [{", ".join(tables)}]
{apps}"""


def clicks_config(key: str) -> str:
    """A table of clicks, each with an id of its own (a copy stored twice would show), and the
    map-form app game writing to it with `key`."""
    return f"""
tables:
  clicks:
    columns:
      - {{name: id, type: uuid, unique: true}}
      - {{name: client, type: i32, required: true}}
apps:
  game:
    secret_key: {key}
    tables: [clicks]
"""


# Two apps (a game's builds) share a table whose rows say which app and which event type.
SHARED_TABLE_CONFIG = f"""
tables:
  plays:
    columns:
      - {{name: level, type: i32, required: true}}
      - {{name: app, type: string, source: app_id, required: true}}
      - {{name: kind, type: varchar(12), source: event_type, required: true}}
      - {{name: note, type: jsonb}}
apps:
  - app_id: ios
    app_secret_key: {SECRET}
    event_types: [{{event_type_id: level_up, table: plays}}, {{event_type_id: level_lost, table: plays}}]
  - app_id: android
    app_secret_key: {SECRET}
    event_types: [{{event_type_id: level_up, table: plays}}]
"""


def segment_config(key: str, schema: str = "mygame", app_lines: str = "", columns: str = "", extra: str = "") -> str:
    """An app `mygame` with the Segment intake in `schema`, its Level Completed tracks also in the
    typed table level_completed (an id, user_id, timestamp, level_number required, score, and
    `columns`); `app_lines` go in the app, `extra` after the apps (more apps)."""
    return f"""
tables:
  level_completed:
    columns:
      - {{name: id, type: text, unique: true}}
      - {{name: user_id, type: text}}
      - {{name: timestamp, type: timestamptz}}
      - {{name: level_number, type: integer, required: true}}
      - {{name: score, type: bigint}}
{columns}apps:
  mygame:
    secret_key: {key}
{app_lines}    tables: [level_completed]
    segment:
      schema: {schema}
      events:
        Level Completed: level_completed
{extra}"""
