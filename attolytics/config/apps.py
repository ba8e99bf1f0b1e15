"""The apps section in either form: a list of apps with their event types, or a map from app id
to app with its tables; and each app's keys, allowed origins, and whether the OpenAPI document
describes it."""

import re
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from attolytics.config.model import App, RateLimit
from attolytics.config.segment_section import check_segment, parse_segment
from attolytics.config.yaml_tree import Node, describe

_ORIGIN_KEY = "access_control_allow_origin"
_RATE_KEY = "rate_limit"
_OPENAPI_KEY = "openapi"
_SEGMENT_KEY = "segment"
# The keys of an app in either form, read by _with_common_keys.
_COMMON_KEYS = (_ORIGIN_KEY, _RATE_KEY, _OPENAPI_KEY, _SEGMENT_KEY)


def parse_apps(node: Node, declared_tables,
               openapi: bool = True) -> tuple[dict[str, App], dict[str, tuple[str, ...]]]:
    """Both forms: a list of apps (app_id, app_secret_key and/or app_secret_keys, event_types), or
    a map from app id to app (secret_key or secret_keys, tables); either may have a rate_limit and
    openapi (true or false; `openapi` is the default) and a segment section. Also, per table, the columns by which the
    list form's skip_duplicates recognises a duplicate."""
    by_id: dict[str, App] = {}
    skip_duplicates: dict[str, tuple[str, ...]] = {}
    if isinstance(node.value, list):
        for item in node.items():
            app = _with_common_keys(_list_form_app(item, declared_tables, skip_duplicates), item, openapi)
            if app.app_id in by_id:
                raise item.error(f"duplicate app id {app.app_id!r}")
            by_id[app.app_id] = app
    elif isinstance(node.value, dict):
        # The YAML loader already refuses a repeated key, so ids are unique here.
        for key, value in node.value.items():
            app_id = str(key) if type(key) is int else key
            item = node.child(str(key), value)
            by_id[app_id] = _with_common_keys(_map_form_app(item, app_id), item, openapi)
    else:
        raise node.error(f"expected a list or a mapping of apps, got {describe(node.value)}")
    if not by_id:
        raise node.error("no apps configured; add at least one")
    check_segment(by_id, declared_tables, skip_duplicates, node)
    return by_id, skip_duplicates


def _list_form_app(node: Node, declared_tables, skip_duplicates: dict) -> App:
    keys = node.mapping({"app_id", "app_secret_key", "app_secret_keys", "event_types", *_COMMON_KEYS},
                        {"app_id"})
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
        secret_keys=_keys(node, keys, "app_secret_key", "app_secret_keys", together=True),
        event_types=event_types,
    )


def _with_common_keys(app: App, node: Node, openapi: bool) -> App:
    """`app` with its origins, rate limit, place in the OpenAPI document (`openapi` when the app
    does not say) and Segment-compatible intake."""
    keys = {key: node.child(key, node.value[key]) for key in _COMMON_KEYS if key in node.value}
    origins = keys.get(_ORIGIN_KEY)
    return replace(
        app,
        allowed_origins=_origins(origins),
        browsers=origins is None or origins.value != [],
        rate_limit=_rate_limit(keys[_RATE_KEY]) if _RATE_KEY in keys else None,
        openapi=keys[_OPENAPI_KEY].boolean() if _OPENAPI_KEY in keys else openapi,
        segment=parse_segment(keys[_SEGMENT_KEY]) if _SEGMENT_KEY in keys else None,
    )


def _keys(node: Node, keys: dict[str, Node], one: str, several: str, together: bool) -> tuple[bytes, ...]:
    """An app's keys: `one` (a key), `several` (a list, to rotate keys), or, where `together`,
    both (the list adds to the one)."""
    if one not in keys and several not in keys:
        raise node.child(one, None).error(f"missing (or list keys in {several})")
    if one in keys and several in keys and not together:
        raise node.error(f"give either {one} or {several} (a list, to rotate keys), not both")
    secrets = [_secret(keys[one])] if one in keys else []
    if several in keys:
        items = keys[several].items()
        if not items:
            raise keys[several].error("list at least one key")
        secrets += [secret for secret in map(_secret, items) if secret not in secrets]
    return tuple(secrets)


def _rate_limit(node: Node) -> RateLimit:
    """rate_limit: {events_per_second, burst, by: app | client}."""
    if node.value == {}:
        raise node.error("give events_per_second and burst, such as {events_per_second: 200, burst: 1000}")
    keys = node.mapping({"events_per_second", "burst", "by"}, {"events_per_second", "burst"})
    rate = keys["events_per_second"].value
    if type(rate) not in (int, float) or not 0 < rate < float("inf"):
        # YAML reads 1e-3 (no dot) as text: say so rather than leave "got '1e-3'" unexplained.
        hint = (" (YAML reads an exponent without a dot as text: write 1.0e-3)"
                if isinstance(rate, str) and "e" in rate.lower() else "")
        raise keys["events_per_second"].error(
            f"expected a number of events above 0, got {describe(rate)}{hint}")
    by = keys["by"].string() if "by" in keys else "app"
    if by not in ("app", "client"):
        raise keys["by"].error(f"expected app (one limit for the app) or client (one per client address), "
                               f"got {by!r}")
    return RateLimit(float(rate), keys["burst"].positive_int(), by)


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
    keys = node.mapping({"secret_key", "secret_keys", "tables", *_COMMON_KEYS})
    secrets = _keys(node, keys, "secret_key", "secret_keys", together=False)
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
    )


def _origins(node: Node | None) -> frozenset[str]:
    """One origin, a list of origins, or "*" (also the default); "*" becomes the empty set, and so
    does an empty list (no web page: App.browsers)."""
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
