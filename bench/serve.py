"""Run one server for the benchmark: the real service, or one of its two baselines.

    python bench/serve.py --mode attolytics|per-event|null --port 8400 --db-url URL

- attolytics: the service as shipped (group commit).
- per-event: the same service, but one INSERT per event and one transaction per request.
- null: the same web stack (Site, body limit, Klein); parses the JSON and answers 200.
- attolytics-ids: the service as shipped, on a table whose events carry a unique uuid id.

With --workers N (attolytics mode), N worker processes serve the socket (supervisor.py).
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
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # measure this checkout

from attolytics.config import DatabaseLocation, parse_config  # noqa: E402
from attolytics.http.site import AttolyticsSite  # noqa: E402
from attolytics.logs import set_verbosity  # noqa: E402
from attolytics.outcomes import Stored  # noqa: E402
from attolytics.service import attolytics_service  # noqa: E402
from attolytics.supervisor import workers_service  # noqa: E402

CONFIG_PATH = Path(__file__).with_name("bench.conf.yaml")
IDS_CONFIG_PATH = Path(__file__).with_name("bench-ids.conf.yaml")


class PerEventWriter:
    """The baseline writer: one INSERT per event, one transaction per request."""

    def __init__(self, db, reactor, settings, batch_observer):
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


class NullAPI:
    """Klein parses the JSON and answers 200; nothing is checked or stored."""

    app = Klein()

    @app.route("/apps/<app_id>/events/<event_type_id>", methods=["POST"])
    def post(self, request, app_id, event_type_id):
        body = json.loads(request.content.getvalue())
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"inserted": len(body["events"])}).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["attolytics", "attolytics-ids", "per-event", "null"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db-url")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (attolytics mode)")
    args = parser.parse_args()

    warnings_only = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sys.stderr), [warnings_only])]
    )
    set_verbosity(-1)
    path = IDS_CONFIG_PATH if args.mode == "attolytics-ids" else CONFIG_PATH
    config = parse_config(path.read_text(), str(path))
    if args.mode == "null":
        site = AttolyticsSite(NullAPI().app.resource(), config.max_body_bytes, config.request_timeout)
        reactor.listenTCP(args.port, site, interface="127.0.0.1")
    else:
        config = replace(
            config, listen=f"tcp:{args.port}:interface=127.0.0.1", database=DatabaseLocation(url=args.db_url)
        )
        writer = PerEventWriter if args.mode == "per-event" else None
        if args.workers > 1:
            config = replace(config, workers=args.workers)
            worker_args = ["--config", str(path), "--listen", config.listen, "--verbosity", "-1"]
            service = workers_service(config, reactor, _fatal, serverFromString(reactor, config.listen),
                                      worker_args)
        else:
            service = attolytics_service(
                config, reactor, on_fatal=_fatal, **({"writer_factory": writer} if writer else {})
            )
        service.startService()
        reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


def _fatal(message: str) -> None:
    Logger().critical("serve.py: {message}", message=message)
    reactor.stop()


if __name__ == "__main__":
    main()
