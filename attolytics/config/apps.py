"""The apps section in either form: a list of apps with their event types, or a map from app id
to app with its tables; and each app's keys and allowed origins."""

import re
from typing import Any
from urllib.parse import urlsplit

from attolytics.config.model import App
from attolytics.config.yaml_tree import Node, describe

_ORIGIN_KEY = "access_control_allow_origin"


def parse_apps(node: Node, declared_tables) -> tuple[dict[str, App], dict[str, tuple[str, ...]]]:
    """Both forms: a list of apps (app_id, app_secret_key, event_types), or a map from app id to
    app (secret_key or secret_keys, tables). Also, per table, the columns by which the list
    form's skip_duplicates recognises a duplicate."""
    by_id: dict[str, App] = {}
    skip_duplicates: dict[str, tuple[str, ...]] = {}
    if isinstance(node.value, list):
        for item in node.items():
            app = _list_form_app(item, declared_tables, skip_duplicates)
            if app.app_id in by_id:
                raise item.error(f"duplicate app id {app.app_id!r}")
            by_id[app.app_id] = app
    elif isinstance(node.value, dict):
        # The YAML loader already refuses a repeated key, so ids are unique here.
        for key, value in node.value.items():
            app_id = str(key) if type(key) is int else key
            by_id[app_id] = _map_form_app(node.child(str(key), value), app_id)
    else:
        raise node.error(f"expected a list or a mapping of apps, got {describe(node.value)}")
    if not by_id:
        raise node.error("no apps configured; add at least one")
    return by_id, skip_duplicates


def _list_form_app(node: Node, declared_tables, skip_duplicates: dict) -> App:
    keys = node.mapping(
        {"app_id", "app_secret_key", "event_types", _ORIGIN_KEY}, {"app_id", "app_secret_key"}
    )
    event_types: dict[str, str] = {}
    for item in keys["event_types"].items() if "event_types" in keys else []:
        fields = item.mapping({"event_type_id", "table", "skip_duplicates"}, {"event_type_id"})
        type_id = fields["event_type_id"].string()
        if type_id in event_types:
            raise fields["event_type_id"].error(f"duplicate event type {type_id!r}")
        event_types[type_id] = fields["table"].string() if "table" in fields else type_id
        if "skip_duplicates" in fields:
            _duplicate_key(fields["skip_duplicates"], event_types[type_id], declared_tables, skip_duplicates)
    return App(
        app_id=_app_id(keys["app_id"]),
        secret_keys=(_secret(keys["app_secret_key"]),),
        event_types=event_types,
        allowed_origins=_origins(keys.get(_ORIGIN_KEY)),
    )


def _duplicate_key(node: Node, table: str, declared_tables, skip_duplicates: dict) -> None:
    """Record in `skip_duplicates` the columns a user-made table's duplicates are recognised by;
    a table has one such key, whichever event types write to it."""
    columns = _column_names(node)
    if table in declared_tables:
        raise node.error(f"table {table!r} is declared: mark its id column unique: true instead")
    if skip_duplicates.setdefault(table, columns) != columns:
        raise node.error(f"another event type of table {table!r} skips duplicates on "
                         f"({', '.join(skip_duplicates[table])}); a table has one key")


def _column_names(node: Node) -> tuple[str, ...]:
    """A non-empty list of distinct column names."""
    names = []
    for item in node.items():
        name = item.string()
        if name in names:
            raise item.error(f"column {name!r} is listed twice")
        names.append(name)
    if not names:
        raise node.error("list the columns that identify an event, such as [id]")
    return tuple(names)


def _map_form_app(node: Node, app_id: Any) -> App:
    if not isinstance(app_id, str) or not app_id:
        raise node.error("an app id must be a non-empty string")
    keys = node.mapping({"secret_key", "secret_keys", "tables", _ORIGIN_KEY})
    if "secret_key" not in keys and "secret_keys" not in keys:
        raise node.child("secret_key", None).error("missing")
    if "secret_key" in keys and "secret_keys" in keys:
        raise node.error("give either secret_key or secret_keys (a list, to rotate keys), not both")
    if "secret_key" in keys:
        secrets = (_secret(keys["secret_key"]),)
    else:
        secrets = tuple(_secret(item) for item in keys["secret_keys"].items())
        if not secrets:
            raise keys["secret_keys"].error("list at least one key")
    tables: dict[str, str] = {}
    for item in keys["tables"].items() if "tables" in keys else []:
        name = item.string()
        if name in tables:
            raise item.error(f"table {name!r} is listed twice")
        tables[name] = name
    return App(
        app_id=app_id,
        secret_keys=secrets,
        event_types=tables,
        allowed_origins=_origins(keys.get(_ORIGIN_KEY)),
    )


def _origins(node: Node | None) -> frozenset[str]:
    """One origin, a list of origins, or "*" (also the default); "*" becomes the empty set."""
    if node is None:
        return frozenset()
    items = node.items() if isinstance(node.value, list) else [node]
    origins = set()
    for item in items:
        origin = item.string()
        if origin == "*":
            if len(items) > 1:
                raise item.error('"*" allows every origin; it cannot be listed with others')
            return frozenset()
        normal = _browser_origin(origin)
        if normal is None:
            raise item.error(
                f"{origin!r} is not an origin; expected scheme://host[:port], such as https://example.com"
            )
        origins.add(normal)
    return frozenset(origins)


_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#\s@]+", re.ASCII | re.IGNORECASE)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _browser_origin(text: str) -> str | None:
    """An origin spelled as browsers send it (lower case, punycode, no default port), or None."""
    if not _ORIGIN.fullmatch(text):
        return None
    parts = urlsplit(text)
    try:
        host, port = parts.hostname, parts.port
        if not host.isascii():
            host = host.encode("idna").decode("ascii")
    except (ValueError, UnicodeError):  # a port out of range, a host IDNA cannot spell
        return None
    scheme = parts.scheme.lower()
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc += f":{port}"
    return f"{scheme}://{netloc}"


def _app_id(node: Node) -> str:
    if isinstance(node.value, int) and not isinstance(node.value, bool):
        return str(node.value)
    return node.string()


def _secret(node: Node) -> bytes:
    value = node.value
    if not isinstance(value, str) or not value.strip():
        raise node.error(
            f"expected a non-empty string, got {describe(value)} (quote a key that looks like a number)"
        )
    return value.encode("utf-8")
