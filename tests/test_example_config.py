"""example.conf.yaml runs as it is, and so does every example it gives in comments: each commented
column, the partition, and the app's commented keys, uncommented together, make a configuration
that loads and whose types are known."""

import re
from pathlib import Path

import pytest

from attolytics.config import parse_config
from attolytics.storage.declarations import declared_types

pytestmark = pytest.mark.unit

EXAMPLE = (Path(__file__).resolve().parent.parent / "example.conf.yaml").read_text()


def with_examples_uncommented(text: str) -> str:
    """The text with the commented examples of the table and the app made real."""
    # Each commented column, at the indentation of the columns it stands beside.
    text = re.sub(r"^      #   - \{", "      - {", text, flags=re.M)
    # The partition, with the timestamp column it needs.
    text = text.replace("    #   partition: {column: at,", "    partition: {column: at,")
    text = text.replace("        required: true\n      - name: event_type",
                        "        required: true\n      - {name: at, type: timestamp, required: true}\n"
                        "      - name: event_type", 1)
    # The app's commented keys (app_secret_keys, rate_limit, access_control_allow_origin, openapi).
    return re.sub(r"^    #   (app_secret_keys|rate_limit|access_control_allow_origin|openapi):", r"    \1:",
                  text, flags=re.M)


def test_the_example_runs_as_it_is():
    config = parse_config(EXAMPLE, "example.conf.yaml")
    assert list(config.apps) == ["mygame"]
    # game_events, and the tables of the app's Segment calls in schema mygame.
    assert list(config.tables) == ["game_events", *config.apps["mygame"].segment.call_tables.values()]


def test_every_commented_example_fits_together():
    text = with_examples_uncommented(EXAMPLE)
    config = parse_config(text, "example.conf.yaml")
    table = config.tables["game_events"]
    assert table.partition is not None and table.partition.column == "at"
    names = [column.name for column in table.columns]
    assert names == ["id", "player", "user_agent", "received_at", "ip", "app", "level", "timestamp", "at",
                     "event_type", "score"]
    types = declared_types(config)["game_events"]
    assert types["at"].ddl == "timestamp with time zone" and types["app"].ddl == "character varying"
    app = config.apps["mygame"]
    assert app.rate_limit is not None and app.openapi is False and len(app.secret_keys) == 2
