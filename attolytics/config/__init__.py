"""The configuration file: YAML in either form of apps, read into frozen dataclasses.

It knows neither HTTP nor SQL: column types stay as written, and storage says what they mean.
"""

from attolytics.config.load import load_config, parse_config
from attolytics.config.model import (
    DEFAULT_EMBEDDED_PATH,
    DEFAULT_LISTEN,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_EVENTS_PER_REQUEST,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SHUTDOWN_TIMEOUT,
    App,
    ColumnDecl,
    Config,
    ConfigError,
    DatabaseLocation,
    PartitionDecl,
    RateLimit,
    SegmentSettings,
    TableDecl,
    WriterSettings,
)

__all__ = [
    "DEFAULT_EMBEDDED_PATH", "DEFAULT_LISTEN", "DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_EVENTS_PER_REQUEST",
    "DEFAULT_REQUEST_TIMEOUT", "DEFAULT_SHUTDOWN_TIMEOUT", "App", "ColumnDecl", "Config", "ConfigError", "DatabaseLocation",
    "PartitionDecl", "RateLimit", "SegmentSettings", "TableDecl", "WriterSettings", "load_config", "parse_config",
]
