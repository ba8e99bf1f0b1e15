"""The configuration reference (attolytics/config/reference.py) against the real loader: every key
the loader allows is in the reference, in the forms it is allowed in, and every key of the
reference is one the loader takes."""

import copy
import re

import pytest
import yaml

from attolytics.config import ConfigError, parse_config
from attolytics.config import reference
from attolytics.config.yaml_tree import Node
from attolytics.reload import RESTART_ONLY

pytestmark = pytest.mark.unit

LIST, MAP = reference.LIST, reference.MAP
# Sections outside `apps` belong to both forms alike: compared without one.
ANY_FORM = "any"

# Configurations the loader takes, one for each form of apps: a declared table with an id and a
# required time (for partitions and Segment's typed tables), and an app that writes to it.
TABLE = {"columns": [{"name": "id", "type": "uuid", "unique": True},
                     {"name": "ts", "type": "timestamp", "required": True}]}
BASE = {
    LIST: {"tables": {"t": TABLE},
           "apps": [{"app_id": "a", "app_secret_key": "key-of-a", "event_types": [{"event_type_id": "t"}]}]},
    MAP: {"tables": {"t": TABLE}, "apps": {"a": {"secret_key": "key-of-a", "tables": ["t"]}}},
}
# The least each section needs, beside the key a test gives it.
SMALLEST = {
    "database": {}, "writer": {}, "apps.*.rate_limit": {"events_per_second": 1, "burst": 1},
    "apps.*.segment": {"schema": "s"}, "tables.*.columns[]": {"name": "c"},
    "tables.*.partition": {"column": "ts", "interval": "day", "ahead": 1, "keep": 1},
}


def section_of(config: dict, section: str, form: str) -> dict:
    """The mapping of `config` where `section`'s keys go, made when missing."""
    if section == "":
        return config
    app = config["apps"][0] if form == LIST else config["apps"]["a"]
    found = {
        "apps.*": lambda: app,
        "apps.*.event_types[]": lambda: app["event_types"][0],
        "apps.*.rate_limit": lambda: app.setdefault("rate_limit", {}),
        "apps.*.segment": lambda: app.setdefault("segment", {}),
        "tables.*": lambda: config["tables"]["t"],
        # A table of its own, so that a second unique column is not refused for the table's sake.
        "tables.*.columns[]": lambda: config["tables"].setdefault("cols", {"columns": [{}]})["columns"][0],
        "tables.*.partition": lambda: config["tables"]["t"].setdefault("partition", {}),
        "database": lambda: config.setdefault("database", {}),
        "writer": lambda: config.setdefault("writer", {}),
    }[section]()
    if not found:
        found.update(SMALLEST.get(section, {}))
    return found


def config_with(key: reference.Key, form: str, name: str, value) -> str:
    """The form's base configuration with `name: value` (and what `key` needs beside it) in
    `key`'s section, as YAML."""
    config = copy.deepcopy(BASE[form])
    where = section_of(config, key.section, form)
    where.update(key.needs)
    for other in key.without:
        where.pop(other)
    where[name] = value
    return yaml.safe_dump(config)


def cases():
    return [pytest.param(key, form, id=f"{key.path}-{form}") for key in reference.KEYS for form in key.forms]


@pytest.mark.parametrize("form", [LIST, MAP])
def test_the_base_configurations_are_taken(form):
    parse_config(yaml.safe_dump(BASE[form]), "base.yaml")


@pytest.mark.parametrize("key,form", cases())
def test_the_loader_takes_each_key_of_the_reference(key, form):
    parse_config(config_with(key, form, key.name, key.example), f"{key.path}.yaml")


@pytest.mark.parametrize("key,form", cases())
def test_the_section_of_each_key_is_one_the_loader_checks(key, form):
    """The same place with a key nobody knows is refused: the test above reached a section
    whose keys the loader checks, and a key the loader did not know would have failed there."""
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config(config_with(key, form, "no_such_key", 1), f"{key.path}.yaml")


def allowed_keys(monkeypatch, text: str) -> list[tuple[str, frozenset]]:
    """(key path, allowed keys) of each mapping the loader checks while it parses `text`."""
    seen = []
    checked = Node.mapping

    def recording(node, allowed, required=frozenset()):
        seen.append((node.path, frozenset(allowed)))
        return checked(node, allowed, required)

    monkeypatch.setattr(Node, "mapping", recording)
    parse_config(text, "every-section.yaml")
    monkeypatch.undo()
    return seen


def section_and_form(path: str) -> tuple[str, str]:
    """A key path as parsed (apps[0].rate_limit, tables.t.columns[2]) as a reference section
    (apps.*.rate_limit, tables.*.columns[]) and the form of apps it was found in."""
    form = ANY_FORM
    if re.match(r"apps\[\d+\]", path):
        form, path = LIST, re.sub(r"^apps\[\d+\]", "apps.*", path)
    elif path.startswith("apps."):
        form, path = MAP, re.sub(r"^apps\.[^.\[]+", "apps.*", path)
    path = re.sub(r"^tables\.[^.\[]+", "tables.*", path)
    return re.sub(r"\[\d+\]", "[]", path), form


def every_section(form: str) -> str:
    """A configuration of `form` that reaches every section the loader reads."""
    config = copy.deepcopy(BASE[form])
    for section in ("database", "writer", "apps.*.rate_limit", "apps.*.segment", "tables.*.columns[]",
                    "tables.*.partition"):
        section_of(config, section, form)
    return yaml.safe_dump(config)


def test_every_key_the_loader_allows_is_in_the_reference(monkeypatch):
    found = set()
    for form in (LIST, MAP):
        for path, allowed in allowed_keys(monkeypatch, every_section(form)):
            section, in_form = section_and_form(path)
            found |= {(section, name, in_form) for name in allowed}
    described = {(key.section, key.name, form if key.section.startswith("apps") else ANY_FORM)
                 for key in reference.KEYS for form in key.forms}
    assert sorted(found - described) == [], "keys the loader takes that the reference lacks"
    assert sorted(described - found) == [], "keys of the reference the loader does not allow"


def test_each_key_is_described_once():
    paths = [key.path for key in reference.KEYS]
    assert sorted({path for path in paths if paths.count(path) > 1}) == []


def test_what_only_a_restart_changes_is_marked_so():
    restart = {key.path for key in reference.KEYS if reference.restart_only(key, RESTART_ONLY) == "restart"}
    for name in RESTART_ONLY:
        assert name in restart or any(path.startswith(name + ".") for path in restart), name
    assert "database_url" in restart and "database.url" in restart
    assert "writer.max_batch_rows" not in restart and "apps" not in restart


@pytest.mark.parametrize("form", [LIST, MAP])
def test_the_defaults_are_those_the_loader_gives(form):
    """Defaults the reference gives as values are those of a configuration that leaves them out."""
    config = parse_config(every_section(form), "defaults.yaml")
    app = config.apps["a"]
    column = config.tables["cols"].columns[0]
    given = {
        "listen": config.listen, "max_body_bytes": config.max_body_bytes, "workers": config.workers,
        "max_events_per_request": config.max_events_per_request, "request_timeout": config.request_timeout,
        "shutdown_timeout": config.shutdown_timeout, "openapi": app.openapi,
        "apps.*.rate_limit.by": app.rate_limit.by, "tables.*.columns[].type": column.type_name,
        **{f"writer.{name}": getattr(config.writer, name)
           for name in ("connections", "max_batch_rows", "max_queued_rows", "max_delay_ms", "flush_timeout")},
        **{f"tables.*.columns[].{flag}": getattr(column, flag)
           for flag in ("required", "indexed", "unique", "anonymize")},
    }
    defaults = {key.path: key.default for key in reference.KEYS}
    for path, value in given.items():
        assert defaults[path].startswith(reference.code(value)), path


def test_the_page_names_every_key():
    page = reference.render_markdown(RESTART_ONLY)
    assert [key.path for key in reference.KEYS if f"\n`{key.path}`\n: *{key.type}*; default: " not in page] == []
    assert ("`listen`\n: *Twisted endpoint description*; default: `tcp:8000:interface=127.0.0.1`; forms: both; "
            "applied by: **restart**.") in page
    assert "`apps.*.secret_keys`\n: *list of strings*; default: none; forms: map form; applied by: **reload**." in page
