"""The twistd plugin's command line and the factory that builds the service from it."""

import sys
from dataclasses import replace

from twisted.application.service import MultiService
from twisted.internet.endpoints import serverFromString
from twisted.logger import ILogObserver
from twisted.python import usage
from twisted.python.logfile import LogFile

from attolytics.config import ConfigError, DatabaseLocation, load_config
from attolytics.logs import JsonLinesObserver, logger, set_verbosity
from attolytics.signals import exit_on_fatal, reload_on_sighup, stop_on_signals
from attolytics.service import attolytics_service
from attolytics.supervisor import workers_service

log = logger(__name__)

DEFAULT_CONFIG = "attolytics.conf.yaml"


class Options(usage.Options):
    """`twistd attolytics` options; older spellings (--schema, --db_url) are accepted too."""

    optParameters = [
        ["config", "c", None, "The configuration file (YAML); default ./attolytics.conf.yaml."],
        ["schema", None, None, "Same as --config (its older name)."],
        ["listen", None, None, "Where to listen, as an endpoint description "
         "(default: the config's listen key, else tcp:8000:interface=127.0.0.1)."],
        ["host", "H", None, "Listen on TCP at this address (with --port; default localhost)."],
        ["port", "p", None, "Listen on TCP at this port (with --host; default 8000).", int],
        ["db-url", None, None, "PostgreSQL connection URL; overrides the config's database."],
        ["db_url", None, None, "Same as --db-url (its older spelling)."],
        ["log-format", None, "text", "text, or json: one JSON object per line, for log shippers."],
        ["workers", None, None, "Worker processes serving the socket together (default: the config's "
         "workers key, else 1).", int],
    ]

    def __init__(self):
        super().__init__()
        self["verbosity"] = 0

    def opt_verbose(self):
        """Log more (debug messages); repeatable, for no difference yet."""
        self["verbosity"] += 1

    def opt_quiet(self):
        """Log only warnings and errors, and no line per request."""
        self["verbosity"] -= 1

    opt_v = opt_verbose
    opt_q = opt_quiet

    def postOptions(self):
        if self["config"] and self["schema"] and self["config"] != self["schema"]:
            raise usage.UsageError("give either --config or --schema, not both")
        self["config"] = self["config"] or self["schema"] or DEFAULT_CONFIG
        if self["db-url"] and self["db_url"] and self["db-url"] != self["db_url"]:
            raise usage.UsageError("give either --db-url or --db_url, not both")
        self["db-url"] = self["db-url"] or self["db_url"]
        if self["port"] is not None and not 0 <= self["port"] <= 65535:
            raise usage.UsageError(f"--port {self['port']} is not a TCP port number")
        if self["listen"] and (self["host"] or self["port"] is not None):
            raise usage.UsageError("give either --listen or --host/--port, not both")
        if self["host"] or self["port"] is not None:
            self["listen"] = tcp_endpoint(self["host"] or "localhost", self["port"] or 8000)
        if self["log-format"] not in ("text", "json"):
            raise usage.UsageError("--log-format is text or json")
        if self["workers"] is not None and self["workers"] < 1:
            raise usage.UsageError(f"--workers {self['workers']} must be 1 or more")


def tcp_endpoint(host: str, port: int) -> str:
    """The endpoint description for TCP on `host` and `port` (colons of IPv6 escaped)."""
    if host == "localhost":
        host = "127.0.0.1"
    return f"tcp:{port}:interface={host.replace(':', chr(92) + ':')}"


def makeService(options, reactor=None):
    """Load the configuration and build the service; a configuration mistake exits with status 1."""
    if reactor is None:
        from twisted.internet import reactor
    set_verbosity(options["verbosity"])

    def overrides(config):
        """The options given over the file's keys, at start-up and at each reload."""
        if options["listen"]:
            config = replace(config, listen=options["listen"])
        if options["db-url"]:
            config = replace(config, database=DatabaseLocation(url=options["db-url"]))
        if options["workers"]:
            config = replace(config, workers=options["workers"])
        return config

    try:
        config = overrides(load_config(options["config"]))
        listen_source = f"{options['config']}: listen"
        if options["listen"]:
            listen_source = "--listen" if not options["port"] and not options["host"] else "--host/--port"
        endpoint = _endpoint(reactor, config.listen, listen_source)
        if config.workers > 1:
            service = workers_service(config, reactor, exit_on_fatal(reactor), endpoint,
                                      _worker_args(options, config))
        else:
            service = attolytics_service(config, reactor, exit_on_fatal(reactor), endpoint, overrides=overrides)
    except ConfigError as e:
        sys.exit(f"attolytics: {e}")
    reactor.callWhenRunning(stop_on_signals, reactor)
    reactor.callWhenRunning(reload_on_sighup, reactor, service)
    if options["log-format"] != "json":
        return service
    top = _LoggingTo(JsonLinesObserver(_log_file(getattr(options, "parent", None))))
    service.setServiceParent(top)
    return top


def _worker_args(options, config) -> list[str]:
    """What each worker's command line says besides its number (see worker.arguments())."""
    args = ["--config", options["config"], "--listen", config.listen, "--verbosity", str(options["verbosity"]),
            "--log-format", options["log-format"], "--log-file", _log_file_name(getattr(options, "parent", None))]
    return args


def _endpoint(reactor, description: str, source: str):
    """The listening endpoint a description names; ConfigError naming `source` when none."""
    try:
        return serverFromString(reactor, description)
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{source}: cannot use {description!r}: {e}") from None


class _LoggingTo(MultiService):
    """Makes twistd log to `observer` (twistd asks the application it is added to)."""

    def __init__(self, observer):
        super().__init__()
        self.observer = observer

    def setServiceParent(self, parent):
        if hasattr(parent, "setComponent"):
            parent.setComponent(ILogObserver, self.observer)
        return super().setServiceParent(parent)


def _log_file_name(twistd_options) -> str:
    """Where twistd would log: "-" (standard output) in the foreground, else its --logfile."""
    twistd_options = twistd_options or {}
    return twistd_options.get("logfile") or ("-" if twistd_options.get("nodaemon", True) else "twistd.log")


def _log_file(twistd_options):
    """The file twistd would log to (see _log_file_name())."""
    name = _log_file_name(twistd_options)
    if name == "-":
        return sys.stdout
    return LogFile.fromFullPath(name)
