"""Read the configuration file: the top-level keys, the database, the writer and the declared tables."""

import ipaddress
import os

from attolytics.config.apps import parse_apps
from attolytics.config.segment_section import call_table_decls
from attolytics.config.table_section import parse_tables, rejected_events_table
from attolytics.config.model import (
    DEFAULT_EMBEDDED_ADDRESS,
    DEFAULT_EMBEDDED_PATH,
    DEFAULT_EMBEDDED_PORT,
    DEFAULT_LISTEN,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_EVENTS_PER_REQUEST,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SHUTDOWN_TIMEOUT,
    Config,
    ConfigError,
    DatabaseLocation,
    WriterSettings,
)
from attolytics.config.yaml_tree import Node, describe, read_yaml

_TOP_LEVEL_KEYS = {"listen", "database", "database_url", "apps", "tables", "max_body_bytes", "writer",
                   "request_timeout", "shutdown_timeout", "trusted_proxies", "rejected_events", "workers",
                   "max_events_per_request", "openapi", "admin_listen"}


def load_config(path: str) -> Config:
    """Read and check the configuration file at `path`; raise ConfigError naming any mistake."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the configuration file: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the configuration file is not UTF-8 text") from None
    return parse_config(text, path)


def parse_config(text: str, source: str) -> Config:
    """Parse configuration YAML `text`; `source` names it in error messages.

    Column types are kept as written: storage.declarations says what they mean.
    """
    keys = read_yaml(text, source).mapping(_TOP_LEVEL_KEYS, {"apps"})
    tables = parse_tables(keys["tables"]) if "tables" in keys else {}
    rejected = rejected_events_table(keys["rejected_events"], tables) if "rejected_events" in keys else None
    if "database_url" in keys:
        if "database" in keys:
            raise keys["database_url"].error("give either database_url or a database section, not both")
        database = DatabaseLocation(url=keys["database_url"].string())
    else:
        database = _database(keys.get("database"))
    # openapi: false leaves every app out of /openapi.json but those that say openapi: true.
    openapi = keys["openapi"].boolean() if "openapi" in keys else True
    apps, skip_duplicates = parse_apps(keys["apps"], tables, openapi)
    call_table_decls(apps, tables, keys["apps"])
    if rejected is not None:
        for app in apps.values():
            if rejected in app.event_types.values():
                raise keys["rejected_events"].error(
                    f"app {app.app_id!r} writes its events to {rejected!r}; refused events need a table of their own")
    return Config(
        path=source,
        database=database,
        apps=apps,
        tables=tables,
        skip_duplicates=skip_duplicates,
        trusted_proxies=_networks(keys["trusted_proxies"]) if "trusted_proxies" in keys else (),
        rejected_events=rejected,
        listen=keys["listen"].string() if "listen" in keys else DEFAULT_LISTEN,
        admin_listen=keys["admin_listen"].string() if "admin_listen" in keys else None,
        max_body_bytes=(
            keys["max_body_bytes"].positive_int() if "max_body_bytes" in keys else DEFAULT_MAX_BODY_BYTES
        ),
        writer=_writer(keys["writer"]) if "writer" in keys else WriterSettings(),
        request_timeout=(
            keys["request_timeout"].seconds() if "request_timeout" in keys else DEFAULT_REQUEST_TIMEOUT
        ),
        shutdown_timeout=(
            keys["shutdown_timeout"].seconds() if "shutdown_timeout" in keys else DEFAULT_SHUTDOWN_TIMEOUT
        ),
        workers=keys["workers"].positive_int() if "workers" in keys else 1,
        max_events_per_request=(keys["max_events_per_request"].positive_int() if "max_events_per_request" in keys
                                else DEFAULT_MAX_EVENTS_PER_REQUEST),
    )


def _networks(node: Node) -> tuple:
    """A list of addresses and networks (203.0.113.7, 10.0.0.0/8, ::1, fd00::/8)."""
    networks = []
    for item in node.items():
        text = item.string()
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise item.error(f"{text!r} is not an IP address or network, such as 10.0.0.0/8") from None
        mapped = network.version == 6 and network.network_address.ipv4_mapped
        if mapped and network.prefixlen >= 96:  # ::ffff:10.0.0.1 is 10.0.0.1, as peers are read
            network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
        networks.append(network)
    return tuple(networks)


def _writer(node: Node) -> WriterSettings:
    keys = node.mapping(
        {"connections", "max_queued_rows", "max_batch_rows", "max_delay_ms", "flush_timeout"}
    )
    settings = {
        name: child.positive_int()
        for name, child in keys.items()
        if name not in ("max_delay_ms", "flush_timeout")
    }
    if "flush_timeout" in keys:
        settings["flush_timeout"] = keys["flush_timeout"].seconds()
    if "max_delay_ms" in keys:
        delay = keys["max_delay_ms"].value
        if type(delay) is not int or not 0 <= delay <= 1000:
            raise keys["max_delay_ms"].error(f"expected milliseconds from 0 to 1000, got {describe(delay)}")
        settings["max_delay_ms"] = delay
    return WriterSettings(**settings)


_LIBPQ_KEYS = {"host": "host", "user": "user", "password": "password", "database": "dbname"}


def _database(node: Node | None) -> DatabaseLocation:
    if node is None or node.value is None:
        return DatabaseLocation(embedded_path=os.path.abspath(DEFAULT_EMBEDDED_PATH))
    keys = node.mapping({"url", "embedded", "listen", "port", *_LIBPQ_KEYS})
    chosen = [k for k in ("url", "embedded") if k in keys]
    server_keys = [k for k in ("port", *_LIBPQ_KEYS) if k in keys]
    if len(chosen) + bool(server_keys) > 1:
        raise node.error("give only one of url, embedded, or host/port/user/password/database")
    if "listen" in keys and (server_keys or "url" in keys):
        raise keys["listen"].error("listen is for the embedded PostgreSQL; a server of your own listens where it is set up to")
    if "url" in keys:
        return DatabaseLocation(url=keys["url"].string())
    if server_keys:
        return DatabaseLocation(url=_url_from_keys(keys))
    path = keys["embedded"].string() if "embedded" in keys else DEFAULT_EMBEDDED_PATH
    listen = _embedded_listen(keys["listen"]) if "listen" in keys else None
    return DatabaseLocation(embedded_path=os.path.abspath(path), embedded_listen=listen)


def _embedded_listen(node: Node) -> tuple[str, int] | None:
    """Where the embedded server listens over TCP: `true` (127.0.0.1:5432), a port, an address,
    or ADDRESS:PORT ([::1]:5432 for IPv6); `false` for its socket alone."""
    value, port = node.value, DEFAULT_EMBEDDED_PORT
    mistake = f"expected true, a port, an IP address, or ADDRESS:PORT such as 127.0.0.1:5432, got {describe(value)}"
    if value is True or value is False:
        return (DEFAULT_EMBEDDED_ADDRESS, port) if value else None
    if type(value) is int:
        address, port = DEFAULT_EMBEDDED_ADDRESS, value
    elif isinstance(value, str):
        address, port = _address_and_port(value.strip(), node, mistake)
    else:
        raise node.error(mistake)
    if not 1 <= port <= 65535:
        raise node.error(f"expected a port from 1 to 65535, got {port}")
    return address, port


def _address_and_port(text: str, node: Node, mistake: str) -> tuple[str, int]:
    address, port = text, str(DEFAULT_EMBEDDED_PORT)
    if text.isdigit():  # a port alone
        address, port = DEFAULT_EMBEDDED_ADDRESS, text
    elif text.startswith("["):  # [::1]:5432
        address, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise node.error(mistake)
            port = rest[1:]
    elif text.count(":") == 1:  # 127.0.0.1:5432 (a bare IPv6 address holds more than one)
        address, port = text.split(":")
    if not port.isdigit():
        raise node.error(mistake)
    if address not in ("localhost", "*"):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise node.error(mistake) from None
    return address, int(port)


def _url_from_keys(keys: dict[str, Node]) -> str:
    """A libpq connection string from the host/port/user/password/database keys."""
    from psycopg2.extensions import make_dsn

    params = {}
    for key, libpq_name in _LIBPQ_KEYS.items():
        if key in keys:
            value = keys[key].value
            if not isinstance(value, str):
                raise keys[key].error(f"expected a string, got {describe(value)}")
            params[libpq_name] = value
    if "port" in keys:
        port = keys["port"].positive_int()
        if port > 65535:
            raise keys["port"].error(f"expected a port number, got {port}")
        params["port"] = str(port)
    return make_dsn(**params)
