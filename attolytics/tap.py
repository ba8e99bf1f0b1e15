"""The one command line of Attolytics and the one bootstrap every process shares: twistd's
plugin (makeService) and each worker process (worker.py) parse their options with Options and
build their service with bootstrap(); the reactor, the metrics, the log observer and where
systemd's notifications go are chosen here, where the process starts."""

import os
import signal
import sys
import time
from dataclasses import replace

from twisted.application.service import MultiService
from twisted.internet.endpoints import serverFromString
from twisted.logger import ILogObserver, LegacyLogObserverWrapper, LogLevel, textFileLogObserver
from twisted.python import usage
from twisted.python.logfile import LogFile

from attolytics import __version__, systemd
from attolytics.config import ConfigError, DatabaseLocation, load_config
from attolytics.logs import JsonLinesObserver, with_verbosity
from attolytics.metrics import Metrics
from attolytics.reload import Configuration
from attolytics.service import Process, attolytics_service
from attolytics.signals import exit_on_fatal, reload_on_sighup, stop_on_signals
from attolytics.supervisor import workers_service

DEFAULT_CONFIG = "attolytics.conf.yaml"


class Options(usage.Options):
    """`twistd attolytics` options (older spellings --schema and --db_url are accepted too); the
    --worker options are the ones a parent process gives each of its workers."""

    optParameters = [
        ["config", "c", None, "The configuration file (YAML); default ./attolytics.conf.yaml."],
        ["schema", None, None, "Same as --config (its older name)."],
        ["listen", None, None, "Where to listen, as an endpoint description "
         "(default: the config's listen key, else tcp:8000:interface=127.0.0.1)."],
        ["admin-listen", None, None, "Serve /metrics and the live view /live there only, as an endpoint "
         "description such as tcp:8100:interface=127.0.0.1 (default: the config's admin_listen key)."],
        ["host", "H", None, "Listen on TCP at this address (with --port; default localhost)."],
        ["port", "p", None, "Listen on TCP at this port (with --host; default 8000).", int],
        ["db-url", None, None, "PostgreSQL connection URL; overrides the config's database."],
        ["db_url", None, None, "Same as --db-url (its older spelling)."],
        ["log-format", None, "text", "text, or json: one JSON object per line, for log shippers."],
        ["workers", None, None, "Worker processes serving the socket together (default: the config's "
         "workers key, else 1).", int],
        ["worker", None, None, "(From a parent process.) Serve as worker N of several.", int],
        ["worker-family", None, None, "(From a parent process.) The listening socket's address family.", int],
        ["worker-notify-fd", None, None, "(From a parent process.) The pipe to tell it READY=1 on.", int],
        ["worker-admin-family", None, None, "(From a parent process.) The admin socket's address family.", int],
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

    def opt_version(self):
        """Show Attolytics' version and exit."""
        sys.stdout.write(f"attolytics {__version__}\n")
        sys.exit(0)

    def parseOptions(self, options=None):
        """Parse the command line; under twistd, a mistake exits 1 with one line naming it
        (twistd itself would show its whole option list before it)."""
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            if getattr(self, "parent", None) is None:  # a worker's command line: worker.py says why
                raise
            sys.exit(f"twistd attolytics: {e}")

    def postOptions(self):
        if self["config"] and self["schema"] and self["config"] != self["schema"]:
            raise usage.UsageError("give either --config or --schema, not both")
        self["config"] = self["config"] or self["schema"] or DEFAULT_CONFIG
        if self["db-url"] and self["db_url"] and self["db-url"] != self["db_url"]:
            raise usage.UsageError("give either --db-url or --db_url, not both")
        self["db-url"] = self["db-url"] or self["db_url"]
        if self["port"] is not None and not 0 <= self["port"] <= 65535:
            raise usage.UsageError(f"--port {self['port']} is not a TCP port number")
        for name in ("listen", "admin-listen"):
            if self[name] is not None and not self[name].strip():
                raise usage.UsageError(f"--{name} needs an endpoint description, such as tcp:8100:interface=127.0.0.1")
        if self["listen"] and (self["host"] or self["port"] is not None):
            raise usage.UsageError("give either --listen or --host/--port, not both")
        if self["host"] or self["port"] is not None:
            self["listen"] = tcp_endpoint(self["host"] or "localhost", self["port"] or 8000)
        if self["log-format"] not in ("text", "json"):
            raise usage.UsageError("--log-format is text or json")
        if self["workers"] is not None and self["workers"] < 1:
            raise usage.UsageError(f"--workers {self['workers']} must be 1 or more")
        if self["worker"] is not None and None in (self["worker-family"], self["worker-notify-fd"], self["listen"]):
            raise usage.UsageError("--worker needs --worker-family, --worker-notify-fd and --listen")


def tcp_endpoint(host: str, port: int) -> str:
    """The endpoint description for TCP on `host` and `port` (colons of IPv6 escaped)."""
    if host == "localhost":
        host = "127.0.0.1"
    return f"tcp:{port}:interface={host.replace(':', chr(92) + ':')}"


def makeService(options, reactor=None):
    """twistd's entry: the service `options` ask for, logging to the observer they choose."""
    if reactor is None:
        from twisted.internet import reactor
    twistd_options = getattr(options, "parent", None) or {}
    to_syslog = twistd_options.get("syslog") and options["log-format"] == "text"
    out = None if to_syslog else _twistd_log(twistd_options, reactor)
    top = _LoggingTo(log_observer(options, out, twistd_options))
    bootstrap(options, reactor, log_lines=_lines_to(out, top.observer)).setServiceParent(top)
    return top


def bootstrap(options, reactor, endpoint=None, log_lines=None, admin_endpoint=None):
    """The service of this process, as `options` say: one serving on `endpoint` (a worker's
    adopted socket) or on the configuration's listen key, and on `admin_endpoint` (a worker's
    adopted admin socket) or the admin_listen key; or the parent of several workers, whose log
    lines go to `log_lines(text)`. A configuration mistake exits with status 1."""
    worker = options["worker"]
    process = Process(reactor, reactor, Metrics(multiprocess=bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))),
                      systemd.notifier(os.environ.get("NOTIFY_SOCKET"), options["worker-notify-fd"]),
                      exit_on_fatal(reactor), lambda: _with_overrides(options, load_config(options["config"])),
                      access_log=options["verbosity"] >= 0)
    try:
        configuration = Configuration.of(process.read())
        config = configuration.config
        if endpoint is None:
            endpoint = _endpoint(reactor, config.listen, _listen_source(options))
        if admin_endpoint is None and worker is None and config.admin_listen is not None:
            admin_endpoint = _endpoint(reactor, config.admin_listen, _admin_listen_source(options))
        if worker is None and config.workers > 1:
            service = workers_service(configuration, process, endpoint, worker_args(options, config),
                                      log_lines or _lines_to(sys.stdout, None), admin_endpoint)
        else:
            service = attolytics_service(configuration, process, endpoint, admin_endpoint)
    except ConfigError as e:
        sys.exit(f"attolytics worker {worker}: {e}" if worker is not None else f"attolytics: {e}")
    reactor.callWhenRunning(stop_on_signals, reactor)
    reactor.callWhenRunning(reload_on_sighup, reactor, service)
    return service


def _with_overrides(options, config):
    """`config` with what the command line says over the file's keys (at start-up and at each
    reload)."""
    if options["listen"]:
        config = replace(config, listen=options["listen"])
    if options["worker"] is not None:  # a worker serves the admin port its parent opened, if any
        config = replace(config, admin_listen=options["admin-listen"])
    elif options["admin-listen"]:
        config = replace(config, admin_listen=options["admin-listen"])
    if options["db-url"]:
        config = replace(config, database=DatabaseLocation(url=options["db-url"]))
    if options["workers"]:
        config = replace(config, workers=options["workers"])
    return config


def _listen_source(options) -> str:
    """What named the listening address, for a message about it."""
    if not options["listen"]:
        return f"{options['config']}: listen"
    return "--listen" if not options["port"] and not options["host"] else "--host/--port"


def _admin_listen_source(options) -> str:
    """What named the admin port's address, for a message about it."""
    return "--admin-listen" if options["admin-listen"] else f"{options['config']}: admin_listen"


def worker_args(options, config) -> list[str]:
    """What each worker's command line repeats of this one's, besides the --worker options."""
    verbosity = options["verbosity"]
    flags = ["--verbose"] * verbosity if verbosity > 0 else ["--quiet"] * -verbosity
    admin = ["--admin-listen", config.admin_listen] if config.admin_listen is not None else []
    return ["--config", options["config"], "--listen", config.listen, *admin, *flags,
            "--log-format", options["log-format"]]


def log_observer(options, out, twistd_options=None):
    """The observer this process logs to: text or JSON lines written to `out`, or twistd's
    --syslog; Attolytics' messages kept to the verbosity -v and -q chose."""
    twistd_options = twistd_options or {}
    if options["log-format"] == "json":
        observer = JsonLinesObserver(out)
    elif out is None:  # twistd --syslog
        from twisted.python import syslog

        observer = LegacyLogObserverWrapper(syslog.SyslogObserver(twistd_options.get("prefix", "twisted")).emit)
    else:
        observer = textFileLogObserver(out)
    return with_verbosity(observer, options["verbosity"])


def _lines_to(out, observer):
    """log_lines(text): writes the workers' whole lines to `out`, the one file this process
    logs to (so no process writes over another's lines, and a rotation moves them all); with
    no file (twistd --syslog), each line is an event for `observer`."""
    def log_lines(text: str) -> None:
        if out is not None:
            out.write(text)
            out.flush()
            return
        for line in text.splitlines():  # outside Attolytics' namespace: the worker kept to -v/-q already
            observer({"log_format": "{line}", "line": line, "log_level": LogLevel.info,
                      "log_namespace": "attolytics-worker", "log_time": time.time(), "log_system": "-"})

    return log_lines


def _endpoint(reactor, description: str, source: str):
    """The listening endpoint a description names; ConfigError naming `source` when none."""
    try:
        return serverFromString(reactor, description)
    except Exception as e:  # a description names a parser and its arguments: any of them can refuse
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
    return twistd_options.get("logfile") or ("-" if twistd_options.get("nodaemon", True) else "twistd.log")


def _twistd_log(twistd_options, reactor):
    """The file twistd would log to (see _log_file_name()); a log file of its own is rotated
    at SIGUSR1, as twistd does."""
    name = _log_file_name(twistd_options)
    if name == "-":
        return sys.stdout
    log_file = LogFile.fromFullPath(name)
    reactor.callWhenRunning(signal.signal, signal.SIGUSR1,
                            lambda *_: reactor.callFromThread(log_file.rotate))
    return log_file
