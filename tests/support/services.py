"""The real service, started in the test's own process on an ephemeral port."""

from dataclasses import replace

from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString

from attolytics.config import DatabaseLocation, load_config, parse_config
from attolytics.metrics import Metrics
from attolytics.reload import Configuration
from attolytics.service import Process, attolytics_service
from attolytics.systemd import nowhere
from support.http import Client


class Running:
    """A started service and a client for it; `fatal` collects start-up failures."""

    def __init__(self, service, fatal: list):
        self.service = service
        self.fatal = fatal
        self.client = Client(self.port)

    @property
    def port(self) -> int:
        """The port it listens on."""
        return self.service.getServiceNamed("http").port.getHost().port

    @property
    def admin_port(self) -> int:
        """The admin port it listens on (with admin_listen)."""
        return self.service.getServiceNamed("admin").port.getHost().port

    @property
    def writer(self):
        """Its writer, once the database is ready."""
        return self.service.getServiceNamed("writer").writer

    def stop(self):
        """Stop it as SIGTERM would: a Deferred that fires once it has stopped."""
        return self.service.stopService()


async def start_service(config_text: str, database_url: str, wait: bool = True, path=None,
                        clock=None) -> Running:
    """Start the real service on an ephemeral port with this configuration and database.

    With `wait`, return once start-up has ended (ready, or a fatal error recorded). With `path`,
    the configuration is written there and read from there, as at each reload. `clock` is the
    time partitions follow (the reactor's by default). An `admin_listen` of the configuration is
    served as it says (tcp:0 for an ephemeral port).
    """
    def overrides(config):
        return replace(config, listen="tcp:0:interface=127.0.0.1", database=DatabaseLocation(url=database_url))

    if path is not None:
        path.write_text(config_text)
        config = overrides(load_config(str(path)))
    else:
        config = overrides(parse_config(config_text, "test.conf.yaml"))
    fatal = []
    process = Process(reactor, clock or reactor, Metrics(), nowhere, fatal.append,
                      lambda: overrides(load_config(str(path))))
    admin = serverFromString(reactor, config.admin_listen) if config.admin_listen is not None else None
    service = attolytics_service(Configuration.of(config), process, serverFromString(reactor, config.listen), admin)
    service.startService()  # a TCP endpoint listens at once, so the port is known now
    if wait:
        await service.getServiceNamed("database").starting
    return Running(service, fatal)
