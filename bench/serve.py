"""Run one server for the benchmark: the real service, or one of its two baselines.

    python bench/serve.py --mode attolytics|per-event|null|twisted-web|... --port 8400 --db-url URL

- attolytics: the service as shipped (group commit).
- per-event: the same service, but one INSERT per event and one transaction per request.
- null: the same web stack (Site, body limit, Klein); parses the JSON and answers 200.
- attolytics-ids: the service as shipped, on a table whose events carry a unique uuid id.
- segment: the service as shipped, on a configuration with Segment's API and a typed table.
- twisted-web: a plain twisted.web resource (no Klein, no database): json.loads, the key, 200.

With --workers N (attolytics mode), N worker processes serve the socket (supervisor.py); with
--admin-listen (attolytics mode), an admin port serves the live view there too.
"""

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from klein import Klein
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # measure this checkout

from attolytics.config import DatabaseLocation, load_config  # noqa: E402
from attolytics.http.site import AttolyticsSite  # noqa: E402
from attolytics.metrics import Metrics  # noqa: E402
from attolytics.outcomes import Stored  # noqa: E402
from attolytics.reconfigurable import ReconfigurableService  # noqa: E402
from attolytics.reload import Configuration  # noqa: E402
from attolytics.service import Process, serving  # noqa: E402
from attolytics.shutdown import Shutdown  # noqa: E402
from attolytics.storage.database import DatabaseService  # noqa: E402
from attolytics.storage.embedded import database_location  # noqa: E402
from attolytics.storage.maintenance import PartitionMaintenance  # noqa: E402
from attolytics.systemd import nowhere  # noqa: E402
from attolytics.tap import Options, bootstrap  # noqa: E402

CONFIG_PATH = Path(__file__).with_name("bench.conf.yaml")
IDS_CONFIG_PATH = Path(__file__).with_name("bench-ids.conf.yaml")
SEGMENT_CONFIG_PATH = Path(__file__).with_name("bench-segment.conf.yaml")


class PerEventWriter:
    """The baseline writer: one INSERT per event, one transaction per request."""

    def __init__(self, db):
        self.db = db
        self.queued_rows = 0

    @property
    def connected(self) -> bool:
        return bool(self.db.connected)

    def configure(self, settings) -> None:
        pass

    def insert(self, batches, size: int = 0) -> Deferred:
        def interaction(cursor):
            async def run():
                for table, rows in batches:
                    columns = ", ".join(f'"{name}"' for name in table.columns)
                    placeholders = ", ".join(["%s"] * len(table.columns))
                    sql = f'INSERT INTO "{table.name}" ({columns}) VALUES ({placeholders})'
                    for row in rows:
                        await cursor.execute(sql, row)
                return Stored(sum(len(rows) for _, rows in batches))

            return Deferred.fromCoroutine(run())

        return self.db.runInteraction(interaction)

    def drain(self) -> Deferred:
        d = Deferred()
        d.callback(None)
        return d


class PerEventWriters(ReconfigurableService):
    """The baseline's writer service: a PerEventWriter through the database's pool once it is
    ready; no refused events kept."""

    def __init__(self, database: DatabaseService):
        self.database = database
        self.writer = None
        self.refused_writer = None

    def reconfigure(self, configuration) -> None:
        """Write through the database's pool once it is ready."""
        if self.writer is None and self.database.pool is not None:
            self.writer = PerEventWriter(self.database.pool)


class NullAPI:
    """Klein parses the JSON and answers 200; nothing is checked or stored."""

    app = Klein()

    @app.route("/apps/<app_id>/events/<event_type_id>", methods=["POST"])
    def post(self, request, app_id, event_type_id):
        body = json.loads(request.content.getvalue())
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"inserted": len(body["events"])}).encode()


class PlainResource(Resource):
    """Twisted's own HTTP limit: a plain twisted.web resource that reads the body, parses it with
    json.loads, checks the key and answers 200; no Klein, no database."""

    isLeaf = True

    def render_POST(self, request):
        body = json.loads(request.content.read())
        request.setHeader(b"Content-Type", b"application/json")
        if body.get("secret_key") != "bench-key":
            request.setResponseCode(403)
            return b'{"error": "wrong secret_key"}'
        return b'{"inserted": %d}' % len(body["events"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["attolytics", "attolytics-ids", "segment", "per-event", "null",
                                           "twisted-web"],
                        required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db-url")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (attolytics mode)")
    parser.add_argument("--admin-listen", help="an admin port, as an endpoint description (attolytics mode)")
    args = parser.parse_args()

    warnings_only = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sys.stderr), [warnings_only])]
    )
    path = {"attolytics-ids": IDS_CONFIG_PATH, "segment": SEGMENT_CONFIG_PATH}.get(args.mode, CONFIG_PATH)
    listen = f"tcp:{args.port}:interface=127.0.0.1"
    if args.mode == "twisted-web":
        site = Site(PlainResource())
        site.log = lambda request: None  # no access log, as the service runs with -q
        reactor.listenTCP(args.port, site, interface="127.0.0.1")
    elif args.mode == "null":
        config = load_config(str(path))
        site = AttolyticsSite(NullAPI().app.resource(), config.max_body_bytes, config.request_timeout,
                              reactor=reactor, access_log=False)
        reactor.listenTCP(args.port, site, interface="127.0.0.1")
    else:
        if args.mode == "per-event":
            service = per_event_service(replace(load_config(str(path)), listen=listen,
                                                database=DatabaseLocation(url=args.db_url)))
        else:  # the service as twistd builds it, from the same command line
            options = Options()
            admin = ["--admin-listen", args.admin_listen] if args.admin_listen else []
            options.parseOptions(["--config", str(path), "--listen", listen, "--db-url", args.db_url,
                                  "--workers", str(args.workers), *admin, "--quiet"])
            service = bootstrap(options, reactor)
        service.startService()
        reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


def per_event_service(config):
    """The service as shipped, built from the same constructors, with the per-event writer."""
    process = Process(reactor, reactor, Metrics(), nowhere, _fatal, lambda: config, access_log=False)
    shutdown = Shutdown(reactor, config.shutdown_timeout)
    embedded, locate = database_location(config, shutdown)
    database = DatabaseService(reactor, reactor, shutdown, locate, _fatal)
    maintenance = PartitionMaintenance(database, reactor, process.metrics)
    return serving(Configuration.of(config), process, serverFromString(reactor, config.listen), shutdown,
                   embedded, database, PerEventWriters(database), maintenance)


def _fatal(message: str) -> None:
    Logger().critical("serve.py: {message}", message=message)
    reactor.stop()


if __name__ == "__main__":
    main()
