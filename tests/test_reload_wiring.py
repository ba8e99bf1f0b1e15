"""One wiring for start-up and reload: the root hands each configuration to its children in
order, start-up being the first one; a refused reload reaches no child; the tree is built from
constructors that name what each service depends on; twistd and a worker process share one
command line and one bootstrap."""

import socket

from dataclasses import replace

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from attolytics import tap, worker
from attolytics.config import ConfigError, DatabaseLocation, parse_config
from attolytics.metrics import Metrics
from attolytics.reconfigurable import ReconfigurableService
from attolytics.reload import Configuration
from attolytics.service import AttolyticsService, Process, attolytics_service
from attolytics.shutdown import Shutdown
from attolytics.supervisor import WorkerProcesses, workers_service
from support.configs import scores_app

pytestmark = pytest.mark.unit


class Recording(ReconfigurableService):
    """Records each configuration it is handed, and what `log` held by then."""

    def __init__(self, name: str, log: list, fails: bool = False):
        self.name, self.log, self.fails = name, log, fails

    def reconfigure(self, configuration):
        if self.fails:
            raise ConfigError("this child refuses")
        self.log.append((self.name, configuration))


def config(keys=("k",)):
    return parse_config(scores_app(keys=keys), "app.yaml")


def fired(d: Deferred):
    """What `d`, fired already (nothing here waits), fired with."""
    results = []
    d.addBoth(results.append)
    assert len(results) == 1
    return results[0]


def root_with(children, read, notes=None):
    clock = Clock()
    process = Process(clock, clock, Metrics(), (notes if notes is not None else []).append, [].append, read)
    first = Configuration.of(config())
    return AttolyticsService(first, process, Shutdown(clock, 1.0), children), first


def test_start_up_and_a_reload_go_through_the_same_hand_down_in_order():
    log, notes = [], []
    second = config(keys=("k", "newer"))
    root, first = root_with([(name, Recording(name, log)) for name in ("a", "b")], lambda: second, notes)
    root.startService()
    assert log == [("a", first), ("b", first)]
    assert fired(root.reload()) is True
    assert [(name, c.config) for name, c in log[2:]] == [("a", second), ("b", second)]
    assert root.configuration.config is second
    assert notes == ["RELOADING=1", "READY=1"]


def test_a_refused_reload_reaches_no_child_and_keeps_the_configuration_in_force():
    log, notes = [], []

    def broken():
        raise ConfigError("app.yaml: apps: a mistake")

    root, first = root_with([("a", Recording("a", log))], broken, notes)
    root.startService()
    assert fired(root.reload()) is False
    assert log == [("a", first)] and root.configuration is first
    assert notes == ["RELOADING=1", "READY=1"]


def test_a_child_that_refuses_stops_the_walk_so_those_after_it_keep_the_old_one():
    log = []
    children = [("a", Recording("a", log)), ("refuses", Recording("refuses", log)), ("b", Recording("b", log))]
    root, first = root_with(children, lambda: config(keys=("other",)))
    root.startService()
    children[1][1].fails = True
    assert fired(root.reload()) is False
    assert [name for name, _ in log] == ["a", "refuses", "b", "a"]  # start-up, then the reload to "refuses"
    assert root.configuration is first


def process_for(url="postgresql://nowhere/none"):
    clock = Clock()
    return Process(clock, clock, Metrics(), [].append, [].append, lambda: config()), url


class Endpoint:
    """Listens nowhere: the tree is only looked at."""

    def listen(self, factory):
        return Deferred()


def test_the_tree_names_in_its_constructors_who_depends_on_whom():
    process, url = process_for()
    first = Configuration.of(replace(config(), database=DatabaseLocation(url=url)))
    service = attolytics_service(first, process, Endpoint())
    names = [child.name for child in service]
    assert names == ["database", "writer", "maintenance", "routes", "http"]
    database, writer, maintenance, routes = (service.getServiceNamed(n) for n in names[:4])
    assert all(isinstance(s, ReconfigurableService) for s in (database, writer, maintenance, routes))
    assert writer.database is database and writer.maintenance is maintenance
    assert maintenance.database is database
    assert routes.database is database and routes.writers is writer


def test_the_parent_of_workers_hands_a_reload_to_them_through_the_same_path():
    process, _ = process_for()
    service = workers_service(Configuration.of(config()), process, Endpoint(), [], [].append)
    workers = service.getServiceNamed("workers")
    assert isinstance(workers, ReconfigurableService)
    assert isinstance(service, AttolyticsService)


def test_a_worker_parses_the_command_line_its_parent_gives_with_twistds_own_options(tmp_path):
    assert worker.Options is tap.Options and worker.bootstrap is tap.bootstrap
    (tmp_path / "app.yaml").write_text(scores_app())
    options = tap.Options()
    options.parseOptions(["-c", str(tmp_path / "app.yaml"), "-q", "-q", "--log-format", "json",
                          "--listen", "tcp:0:interface=127.0.0.1", "--workers", "2"])
    processes = WorkerProcesses(Clock(), 2, None, lambda: succeed(None), tap.worker_args(options, config()),
                                None, [].append, [].append, [].append)
    processes.port, processes.url = _Port(), "postgresql://db/events"
    command = processes.command(2)
    assert command[1:3] == ["-m", "attolytics.worker"]
    parsed = tap.Options()
    parsed.parseOptions(command[3:])
    assert (parsed["worker"], parsed["worker-family"], parsed["worker-notify-fd"]) == (2, socket.AF_INET, 4)
    assert parsed["config"] == options["config"] and parsed["verbosity"] == -2
    # The URL (and its password) is handed on the worker's standard input, never its command line.
    assert parsed["log-format"] == "json" and parsed["db-url"] is None
    assert not any("postgresql://db/events" in arg for arg in command)


class _Port:
    addressFamily = socket.AF_INET


def test_a_worker_command_line_without_its_parent_options_is_refused():
    with pytest.raises(SystemExit) as exited:
        worker.main(["--worker", "1"])
    assert "--worker needs --worker-family, --worker-notify-fd and --listen" in str(exited.value)
