"""The benchmark: embedded PostgreSQL, the real service and two baselines, driven by wrk.

    python bench/run.py [--duration 10] [--connections 32] [--before REV]

For 1, 10 and 100 events a request it measures events/s, p50 and p99 latency, and the rows
really stored against the 200s received, for the service and, in the same run, for a null
handler on the same web stack and for one INSERT per event; for the service, 10 events again
with a string written in escapes (as Python's json.dumps writes é). It then measures p99
latency at half the service's maximum rate, and resident memory before and after 1,000,000
events; Segment's /v1/batch beside our own route (bench-segment.conf.yaml); and the limits under
the service: PostgreSQL alone (COPY, bench/ceilings.py) and a plain twisted.web resource, with the
CPU per event of the service, of PostgreSQL and of wrk for every shape.
With --before REV, the service as it was at that commit (its own package and bench/serve.py,
taken with git archive) is measured too, right after today's, and reported beside it.
With --live, only the cost of the live view (issue 22) is measured: the service without an admin
port, with one and no viewer, and with one viewer reading /live/events, in rounds taken in turn.
Figures are reported as ratios too, since the machines are shared and noisy.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg2

from ceilings import ROWS_PER_COPY, copy_ceiling, load_generator_cpu_seconds, postgres_cpu_seconds

HERE = Path(__file__).resolve().parent
SEED_EVENT = {"timestamp": 1554130213, "event_type": "game_end", "score": 42}
SHAPES = (1, 10, 100)
MODES = ("null", "per-event", "attolytics", "attolytics-ids", "attolytics-2w", "segment", "twisted-web")
# The table each mode writes to.
TABLES = {"per-event": "game_events", "attolytics": "game_events", "attolytics-ids": "game_events_ids",
          "attolytics-2w": "game_events", "before": "game_events", "segment": "level_completed",
          "admin-port": "game_events"}
# Segment's API beside our own route, for the same rows of a typed table: a level completed.
LEVEL = {"user_id": "ann", "timestamp": "2026-12-07T10:00:00Z", "level_number": 3, "score": 42}
SEGMENT_ROUTE = "/v1/batch"
OWN_LEVEL_ROUTE = "/apps/bench/events/level_completed"
OWN_BOTH_ROUTE = "/apps/bench/events"
# Modes that are serve.py's with other options.
SERVE_ARGS = {"attolytics-2w": ["--mode", "attolytics", "--workers", "2"], "before": ["--mode", "attolytics"],
              "admin-port": ["--mode", "attolytics"]}
ROUTE = "/apps/bench/events/game_events"


def say(text: str = "") -> None:
    """Write a line of the report."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def body_file(directory: Path, events: int, ids: bool = False, escaped: bool = False) -> Path:
    """A request body of `events` events; with `ids`, each has an id that post.lua makes new;
    `escaped`, an event_type with an accent, which json.dumps writes as an escape."""
    path = directory / f"body-{events}{'-ids' if ids else ''}{'-escaped' if escaped else ''}.json"
    event = {"id": "%ID%", **SEED_EVENT} if ids else SEED_EVENT
    if escaped:
        event = {**event, "event_type": "game_énd"}
    path.write_text(json.dumps({"secret_key": "bench-key", "events": [event] * events}))
    return path


def segment_bodies(directory: Path, events: int = 100) -> tuple[Path, Path, Path]:
    """Bodies of `events` levels completed, each with a new id: for our own route, into the typed
    table alone and into it and the tracks table (the rows Segment's API stores); and as track
    messages for Segment's /v1/batch."""
    own = directory / "body-level-ids.json"
    own.write_text(json.dumps({"secret_key": "bench-key", "events": [{"id": "%ID%", **LEVEL}] * events}))
    context = {"library": {"name": "bench"}}
    tracked = {"_t": "bench.tracks", "id": "%ID%", "user_id": LEVEL["user_id"], "timestamp": LEVEL["timestamp"],
               "original_timestamp": LEVEL["timestamp"], "sent_at": LEVEL["timestamp"], "context": context,
               "event": "level_completed", "event_text": "Level Completed", "properties": {}}
    both = directory / "body-level-both-ids.json"
    both.write_text(json.dumps({"secret_key": "bench-key",
                                "events": [tracked, {"_t": "level_completed", "id": "%ID%", **LEVEL}] * events}))
    track = {"type": "track", "event": "Level Completed", "messageId": "%ID%", "userId": LEVEL["user_id"],
             "timestamp": LEVEL["timestamp"], "context": context,
             "properties": {"levelNumber": LEVEL["level_number"], "score": LEVEL["score"]}}
    segment = directory / "body-segment-ids.json"
    segment.write_text(json.dumps({"writeKey": "bench-key", "sentAt": LEVEL["timestamp"], "batch": [track] * events}))
    return own, both, segment


def measure_segment(server: "Server", db_url: str, bodies: tuple[Path, Path, Path], args) -> dict:
    """Our own route (the typed rows alone, then the same rows as Segment's API stores) and
    Segment's /v1/batch, one after the other; each counted in levels completed."""
    own, both, segment = bodies
    return {"own": measure_one(server, db_url, own, 100, args, "100 levels, own route", OWN_LEVEL_ROUTE),
            "both": measure_one(server, db_url, both, 100, args, "100 levels, own route, tracks too",
                                OWN_BOTH_ROUTE),
            "segment": measure_one(server, db_url, segment, 100, args, "100 levels, /v1/batch", SEGMENT_ROUTE)}


class Server:
    """One bench/serve.py process."""

    def __init__(self, mode: str, db_url: str, root: Path = HERE.parent):
        """`root`: the checkout whose bench/serve.py (and package) serves. The admin-port mode
        serves an admin port too (`admin_port`), with the live view."""
        self.mode = mode
        self.port = free_port()
        self.admin_port = free_port() if mode == "admin-port" else None
        admin = ["--admin-listen", f"tcp:{self.admin_port}:interface=127.0.0.1"] if self.admin_port else []
        self.process = subprocess.Popen(
            [sys.executable, str(root / "bench" / "serve.py"), *SERVE_ARGS.get(mode, ["--mode", mode]),
             "--port", str(self.port), "--db-url", db_url, *admin],
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        body = json.dumps({"secret_key": "bench-key", "events": []}).encode()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the {self.mode} server exited with {self.process.returncode}")
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.port}{ROUTE}", data=body,
                headers={"Content-Type": "application/json"}, method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        raise SystemExit(f"the {self.mode} server did not become ready")

    def pids(self) -> list[int]:
        """The server's process, or its worker processes when it has them."""
        children = [int(pid) for pid in Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
                    .read_text().split()]
        workers = [pid for pid in children if b"attolytics.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        return workers or [self.process.pid]

    def rss_mib(self) -> list[float]:
        """Resident memory of each serving process, in MiB."""
        return [_status_kib(pid, "VmRSS:") / 1024 for pid in self.pids()]

    def cpu_seconds(self) -> float:
        """CPU time (user and system) the serving processes have used so far."""
        total = 0
        for pid in {self.process.pid, *self.pids()}:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime, in clock ticks
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(f"no {field}")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _milliseconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * _UNITS[unit]


def run_wrk(port: int, body: Path, seconds: int, connections: int, rate_per_connection: float = 0,
            limit_per_thread: int = 0, route: str = ROUTE) -> dict:
    """Run wrk against the server; return requests, 200s, requests/s, p50 and p99 in ms."""
    env = dict(os.environ, ATTOLYTICS_BENCH_LIMITED="1" if limit_per_thread else "0",
               ATTOLYTICS_BENCH_IDS="1" if body.name.endswith("-ids.json") else "0")
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s",
        "-s", str(HERE / "post.lua"), f"http://127.0.0.1:{port}{route}",
        "--", str(body), str(rate_per_connection), str(limit_per_thread),
    ]
    output = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    requests, elapsed, unit = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m|h)", output).groups()
    elapsed = float(elapsed) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    latency = dict(re.findall(r"^\s+(50|99)(?:\.\d+)?%\s+([\d.]+(?:us|ms|s))", output, re.M))
    requests = int(requests)
    ok = requests - (int(failed.group(1)) if failed else 0)
    return {
        "requests": requests,
        "ok": ok,
        "rps": ok / elapsed,
        "p50": _milliseconds(latency["50"]),
        "p99": _milliseconds(latency["99"]),
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
    }


def stored_rows(db_url: str, table: str = "game_events") -> int:
    with psycopg2.connect(db_url) as connection, connection.cursor() as cur:
        cur.execute(f"select count(*) from {table}")
        return cur.fetchone()[0]


def truncate(db_url: str, table: str = "game_events") -> None:
    with psycopg2.connect(db_url) as connection, connection.cursor() as cur:
        cur.execute(f"truncate {table}")


def wait_until_stored(db_url: str, at_least: int, seconds: float = 30, table: str = "game_events") -> int:
    """Rows in the table once the writes in flight when wrk stopped have landed."""
    deadline = time.monotonic() + seconds
    count = stored_rows(db_url, table)
    while count < at_least and time.monotonic() < deadline:
        time.sleep(0.2)
        count = stored_rows(db_url, table)
    return count


def measure(server: Server, db_url: str, bodies: dict, args) -> dict:
    results = {}
    for events in SHAPES:
        results[events] = measure_one(server, db_url, bodies[events, server.mode == "attolytics-ids"],
                                      events, args, f"{events:>3} events/request")
    if server.mode == "attolytics":
        results["escaped"] = measure_one(server, db_url, bodies["escaped"], 10, args,
                                         " 10 events/request, escaped")
    return results


def measure_one(server: Server, db_url: str, body: Path, events: int, args, label: str,
                route: str = ROUTE) -> dict:
    """One wrk run of `body` (of `events` events) at full speed, the rows it stored, and the CPU
    per event of the service, of PostgreSQL and of wrk (once the rows in flight have landed)."""
    table = TABLES.get(server.mode)
    if table:
        truncate(db_url, table)
    cpu, postgres, load = server.cpu_seconds(), postgres_cpu_seconds(args.pg_data), load_generator_cpu_seconds()
    r = run_wrk(server.port, body, args.duration, args.connections, route=route)
    r["events_per_s"] = r["rps"] * events
    if table:
        r["stored"] = wait_until_stored(db_url, r["ok"] * events, table=table)
        r["acknowledged"] = r["ok"] * events
    sent = max(1, r["requests"] * events)
    r["cpu_us"] = (server.cpu_seconds() - cpu) * 1e6 / sent
    r["postgres_cpu_us"] = (postgres_cpu_seconds(args.pg_data) - postgres) * 1e6 / sent
    r["wrk_cpu_us"] = (load_generator_cpu_seconds() - load) * 1e6 / sent
    say(f"  {server.mode:>10}  {label}: {r['events_per_s']:>10,.0f} events/s"
        f"  p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms  cpu {r['cpu_us']:.1f} us/event"
        f" (PostgreSQL {r['postgres_cpu_us']:.1f}, wrk {r['wrk_cpu_us']:.1f})"
        + (f"  stored {r['stored']:,} / acknowledged {r['acknowledged']:,}" if "stored" in r else ""))
    return r


def paced_latency(server: Server, bodies: dict, maximum: dict, args) -> dict:
    """p99 latency with the load held at half the measured maximum rate."""
    results = {}
    for events in SHAPES:
        rate = maximum[events]["rps"] / 2
        r = run_wrk(server.port, bodies[events, False], args.duration, args.connections,
                    rate_per_connection=rate / args.connections)
        results[events] = r
        say(f"  half rate {events:>3} events/request: {r['rps'] * events:>10,.0f} events/s"
            f"  p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms")
    return results


def memory_growth(server: Server, db_url: str, bodies: dict, rate: float, args) -> tuple:
    """RSS of each serving process before and after 1,000,000 events at 100 events a request
    (`rate` requests/s)."""
    truncate(db_url)
    before = server.rss_mib()
    # wrk stops sending at the limit but runs out its duration: size that to the measured rate.
    seconds = max(10, int(2 * 10_000 / rate) + 5)
    r = run_wrk(server.port, bodies[100, False], seconds, args.connections, limit_per_thread=10_000)
    stored = wait_until_stored(db_url, r["ok"] * 100)
    after = server.rss_mib()
    return before, after, stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--before", metavar="REV", help="measure the service at this commit too, beside today's")
    parser.add_argument("--live", action="store_true",
                        help="measure only the live view's cost: no admin port, an admin port unwatched, one viewer")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: install it with `apt-get install wrk` (Debian/Ubuntu).")

    sys.path.insert(0, str(HERE.parent))
    from attolytics.storage.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="attolytics-bench-") as tmp:
        tmp = Path(tmp)
        os.chmod(tmp, 0o755)  # the embedded server may run as another user
        pg = EmbeddedPostgres(str(tmp / "pgdata"))
        db_url = pg.start()
        args.pg_data = str(tmp / "pgdata")
        bodies = {(events, ids): body_file(tmp, events, ids) for events in SHAPES for ids in (False, True)}
        bodies["escaped"] = body_file(tmp, 10, escaped=True)
        levels = segment_bodies(tmp)
        say(f"wrk: 1 thread, {args.connections} connections, {args.duration} s a run; "
            f"{os.cpu_count()} cores; body = one game event repeated")
        if args.live:
            try:
                rounds = live_rounds(db_url, bodies, args)
            finally:
                pg.stop()
            report_live(rounds)
            return
        results, paced, memory = {}, {}, {}
        modes, roots = MODES, {}
        if args.before:
            roots["before"] = checkout(args.before, tmp / "before")
            modes = MODES[:3] + ("before",) + MODES[3:]
        try:
            for mode in modes:
                server = Server(mode, db_url, roots.get(mode, HERE.parent))
                try:
                    results[mode] = (measure_segment(server, db_url, levels, args) if mode == "segment"
                                     else measure(server, db_url, bodies, args))
                    if mode == "attolytics":
                        paced = paced_latency(server, bodies, results[mode], args)
                    if mode in ("attolytics", "attolytics-2w"):
                        memory[mode] = memory_growth(server, db_url, bodies, results[mode][100]["rps"], args)
                        before, after, stored = memory[mode]
                        say(f"  resident memory per process: {_mib(before)} before, {_mib(after)} after "
                            f"{stored:,} events stored")
                finally:
                    server.stop()
            rounds = alternating_rounds(db_url, bodies, args)
        finally:
            pg.stop()
    report(results, paced, memory)
    report_ceilings(results, rounds)
    if args.before:
        report_before(results, args.before)


# Rounds of the limits and the service taken in turn: the machine is shared, and what it gives
# one run moves between runs (seen: one COPY run at 330k rows/s, another at 1.3M); each ratio
# is taken within a round, and the report gives each round's and their median.
ROUNDS = 3


def alternating_rounds(db_url: str, bodies: dict, args) -> list[dict]:
    """ROUNDS rounds of: PostgreSQL alone (COPY), the service at 100 and at 1 event a request,
    twisted.web alone at 1; both servers running throughout. Each round's ratios."""
    say(f"  {ROUNDS} rounds, each of PostgreSQL alone, the service (100 and 1 events a request) and "
        "twisted.web alone (1), in turn:")
    service, web = Server("attolytics", db_url), Server("twisted-web", db_url)
    rounds = []
    try:
        for _ in range(ROUNDS):
            copy = copy_ceiling(db_url, args.pg_data, args.duration, SEED_EVENT)
            say(f"  PostgreSQL alone (COPY, 2 connections, {ROWS_PER_COPY:,} rows a COPY): "
                f"{copy['rows_per_s']:,.0f} rows/s  PostgreSQL cpu {copy['postgres_cpu_us']:.2f} us/row")
            hundred = measure_one(service, db_url, bodies[100, False], 100, args, "100 events/request")
            one = measure_one(service, db_url, bodies[1, False], 1, args, "  1 events/request")
            plain = measure_one(web, db_url, bodies[1, False], 1, args, "  1 events/request")
            rounds.append({
                "copy": copy, "hundred": hundred, "one": one, "plain": plain,
                "share": hundred["events_per_s"] / copy["rows_per_s"],
                "postgres": hundred["postgres_cpu_us"] / copy["postgres_cpu_us"],
                "service": hundred["cpu_us"],
                "single": one["events_per_s"] / plain["events_per_s"],
            })
    finally:
        service.stop()
        web.stop()
    return rounds


def report_ceilings(results: dict, rounds: list[dict]) -> None:
    """The service against the limits under it, PostgreSQL's COPY and twisted.web alone, round
    by round; and for every shape, where the CPU goes."""
    say()
    say(f"The limits under the service, in {ROUNDS} rounds taken in turn: PostgreSQL alone (COPY, 2 "
        f"connections, {ROWS_PER_COPY:,} rows a COPY), the service, and a plain twisted.web resource "
        "(json.loads, the key, 200):")
    say()
    say("| round | COPY rows/s | COPY PostgreSQL µs/row | attolytics ev/s at 100 (share of COPY) "
        "| PostgreSQL µs/row at 100 (x COPY's) | service µs/row at 100 | ev/s at 1: attolytics / twisted.web |")
    say("|---|---|---|---|---|---|---|")
    for number, r in enumerate(rounds, start=1):
        say(f"| {number} | {r['copy']['rows_per_s']:,.0f} | {r['copy']['postgres_cpu_us']:.2f} "
            f"| {r['hundred']['events_per_s']:,.0f} ({r['share']:.2f}) "
            f"| {r['hundred']['postgres_cpu_us']:.2f} ({r['postgres']:.2f}) | {r['service']:.2f} "
            f"| {r['one']['events_per_s']:,.0f} / {r['plain']['events_per_s']:,.0f} ({r['single']:.2f}) |")
    say()
    say("Where the CPU goes, per event, for every shape (the runs above):")
    say()
    say("| contender | events/request | ev/s | CPU µs/event: service / PostgreSQL / wrk |")
    say("|---|---|---|---|")
    for mode, name in (("twisted-web", "twisted.web alone"), ("null", "null handler (Klein)"),
                       ("attolytics", "attolytics")):
        for events in SHAPES:
            r = results[mode][events]
            say(f"| {name} | {events} | {r['events_per_s']:,.0f} "
                f"| {r['cpu_us']:.2f} / {r['postgres_cpu_us']:.2f} / {r['wrk_cpu_us']:.2f} |")
    say()

    def median(key):
        return sorted(r[key] for r in rounds)[len(rounds) // 2]

    say(f"targets (median of {ROUNDS} rounds): rows/s at 100 events/request >= 0.40 x COPY: {median('share'):.2f}; "
        f"PostgreSQL CPU per row at 100 events/request <= 1.3 x COPY's: {median('postgres'):.2f}; "
        f"service CPU per row at 100 events/request <= 2 us: {median('service'):.2f}; "
        f"events/s at 1 event/request >= 0.90 x twisted.web: {median('single'):.2f}")


class LiveViewer:
    """One viewer of the live view: /live/events of an admin port, read in a thread and dropped,
    counting the entries it got and those the service reports it missed (it read too slowly)."""

    def __init__(self, port: int):
        self.entries = self.missed = 0
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.connection.request("GET", "/live/events")
        self.response = self.connection.getresponse()
        if self.response.status != 200:
            raise SystemExit(f"/live/events answered {self.response.status}")
        self._hello = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if not self._hello.wait(10):
            raise SystemExit("/live/events sent no hello")

    def _read(self) -> None:
        kind = None
        try:
            for line in self.response:
                if line.startswith(b"event: "):
                    kind = line[7:].strip()
                    self.entries += kind == b"request"
                    if kind == b"hello":
                        self._hello.set()
                elif kind == b"missed" and line.startswith(b"data: "):
                    self.missed += json.loads(line[6:])["count"]
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        """Leave, as a page closed."""
        self.connection.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)
        self.connection.close()


LIVE_SHAPES = (1, 100)


def live_rounds(db_url: str, bodies: dict, args) -> list[dict]:
    """ROUNDS rounds, each at 1 and 100 events a request, of: the service without an admin port,
    the service with one and no viewer, then the same with one viewer on /live/events; both
    servers running throughout. The figures of each run, and the viewer's counts."""
    say(f"  the live view's cost, {ROUNDS} rounds of: no admin port, an admin port and no viewer, one viewer:")
    plain, admin = Server("attolytics", db_url), Server("admin-port", db_url)
    rounds = []
    try:
        for _ in range(ROUNDS):
            runs = {}
            for events in LIVE_SHAPES:
                body, label = bodies[events, False], f"{events:>3} events/request"
                none = measure_one(plain, db_url, body, events, args, label + ", no admin port")
                unwatched = measure_one(admin, db_url, body, events, args, label + ", no viewer")
                viewer = LiveViewer(admin.admin_port)
                try:
                    watched = measure_one(admin, db_url, body, events, args, label + ", one viewer")
                finally:
                    viewer.close()
                watched["viewer_entries"], watched["viewer_missed"] = viewer.entries, viewer.missed
                say(f"  the viewer got {viewer.entries:,} entries, and was told of {viewer.missed:,} it missed")
                runs[events] = {"none": none, "unwatched": unwatched, "watched": watched}
            rounds.append(runs)
    finally:
        plain.stop()
        admin.stop()
    return rounds


def report_live(rounds: list[dict]) -> None:
    """The live view's cost, round by round, as ratios to the service without an admin port within
    each round; and their medians."""
    say()
    say(f"The live view's cost, in {ROUNDS} rounds taken in turn (each ratio against the service without "
        "an admin port, in the same round):")
    say()
    say("| round | events/request | no admin port ev/s | admin port, no viewer ev/s (ratio) "
        "| one viewer ev/s (ratio) | service CPU µs/event: none / no viewer / one viewer |")
    say("|---|---|---|---|---|---|")
    for number, runs in enumerate(rounds, start=1):
        for events in LIVE_SHAPES:
            none, unwatched, watched = (runs[events][key] for key in ("none", "unwatched", "watched"))
            say(f"| {number} | {events} | {none['events_per_s']:,.0f} "
                f"| {unwatched['events_per_s']:,.0f} ({unwatched['events_per_s'] / none['events_per_s']:.2f}) "
                f"| {watched['events_per_s']:,.0f} ({watched['events_per_s'] / none['events_per_s']:.2f}) "
                f"| {none['cpu_us']:.2f} / {unwatched['cpu_us']:.2f} / {watched['cpu_us']:.2f} |")
    say()
    for events in LIVE_SHAPES:
        def median(key, figure):
            ratios = sorted(runs[events][key][figure] / runs[events]["none"][figure] for runs in rounds)
            return ratios[len(ratios) // 2]

        say(f"median of {ROUNDS} rounds at {events} events/request: no viewer {median('unwatched', 'events_per_s'):.2f} "
            f"x the events/s without an admin port (CPU per event {median('unwatched', 'cpu_us'):.2f} x); "
            f"one viewer {median('watched', 'events_per_s'):.2f} x (CPU per event {median('watched', 'cpu_us'):.2f} x)")


def checkout(revision: str, folder: Path) -> Path:
    """The files of `revision` of this repository, in `folder`."""
    folder.mkdir()
    archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", revision], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def report_before(results: dict, revision: str) -> None:
    """Today's service beside the one at `revision`, measured in the same run."""
    say()
    say(f"Today's service beside the one at {revision}, same run:")
    say()
    say("| events/request | before ev/s | now ev/s | now / before | CPU us/event (before / now) |")
    say("|---|---|---|---|---|")
    for shape in SHAPES:
        before, now = results["before"][shape], results["attolytics"][shape]
        say(f"| {shape} | {before['events_per_s']:,.0f} | {now['events_per_s']:,.0f} "
            f"| {now['events_per_s'] / before['events_per_s']:.2f} | {before['cpu_us']:.1f} / {now['cpu_us']:.1f} |")


def _mib(values: list[float]) -> str:
    return " / ".join(f"{value:.1f} MiB" for value in values)


def report(results: dict, paced: dict, memory: dict) -> None:
    say()
    say("| events/request | null handler ev/s | per-event INSERT ev/s | attolytics ev/s "
        "| vs null | vs per-event | CPU us/event (null / attolytics) | p50 ms | p99 ms "
        "| p99 ms at half rate | stored / acknowledged |")
    say("|---|---|---|---|---|---|---|---|---|---|---|")
    for events in SHAPES:
        null, per_event, ours = (results[m][events] for m in MODES[:3])
        say(f"| {events} | {null['events_per_s']:,.0f} | {per_event['events_per_s']:,.0f} "
            f"| {ours['events_per_s']:,.0f} | {ours['events_per_s'] / null['events_per_s']:.2f} "
            f"| {ours['events_per_s'] / per_event['events_per_s']:.1f} "
            f"| {null['cpu_us']:.1f} / {ours['cpu_us']:.1f} | {ours['p50']:.2f} "
            f"| {ours['p99']:.2f} | {paced[events]['p99']:.2f} "
            f"| {ours['stored']:,} / {ours['acknowledged']:,} |")
    say()
    say("With a unique uuid id on every event (a fresh id each, made by wrk), and with 2 workers:")
    say()
    say("| events/request | attolytics ev/s | with ids ev/s | with ids vs without | 2 workers ev/s "
        "| 2 workers vs 1 | stored / acknowledged (ids; 2 workers) |")
    say("|---|---|---|---|---|---|---|")
    for events in SHAPES:
        ours, ids, two = (results[m][events] for m in ("attolytics", "attolytics-ids", "attolytics-2w"))
        say(f"| {events} | {ours['events_per_s']:,.0f} | {ids['events_per_s']:,.0f} "
            f"| {ids['events_per_s'] / ours['events_per_s']:.2f} | {two['events_per_s']:,.0f} "
            f"| {two['events_per_s'] / ours['events_per_s']:.2f} "
            f"| {ids['stored']:,} / {ids['acknowledged']:,}; {two['stored']:,} / {two['acknowledged']:,} |")
    say()
    own, both, segment = (results["segment"][name] for name in ("own", "both", "segment"))
    say("Segment's API beside our own route, 100 levels completed a request, each with a new id, "
        "filling the same typed table (Segment's API also writes each to its tracks table; the "
        "second row is our own route writing both):")
    say()
    say("| route | levels/s | CPU us/level | p99 ms | rows stored / acknowledged |")
    say("|---|---|---|---|---|")
    for name, r in (("own route, typed table", own), ("own route, tracks and typed table", both),
                    ("/v1/batch", segment)):
        say(f"| {name} | {r['events_per_s']:,.0f} | {r['cpu_us']:.1f} | {r['p99']:.2f} "
            f"| {r['stored']:,} / {r['acknowledged']:,} |")
    say()
    ratio = {n: results["attolytics"][n]["events_per_s"] / results["null"][n]["events_per_s"] for n in SHAPES}
    growth = [after - before for mode in memory for before, after in zip(memory[mode][0], memory[mode][1])]
    say(f"targets: 10 and 100 events/request >= 0.80 x null: {ratio[10]:.2f}, {ratio[100]:.2f}; "
        f"2 workers >= 1.4 x 1 at 100 events/request: "
        f"{results['attolytics-2w'][100]['events_per_s'] / results['attolytics'][100]['events_per_s']:.2f}; "
        f"p99 at half rate <= 25 ms: {max(p['p99'] for p in paced.values()):.1f}; "
        f"10 events/request with escapes vs without: "
        f"{results['attolytics']['escaped']['events_per_s'] / results['attolytics'][10]['events_per_s']:.2f}; "
        f"memory growth per process over 1,000,000 events: {', '.join(f'{g:+.1f}' for g in growth)} MiB; "
        f"/v1/batch >= 0.5 x own route: {segment['events_per_s'] / own['events_per_s']:.2f} "
        f"(the same rows in both tables: {segment['events_per_s'] / both['events_per_s']:.2f})")


if __name__ == "__main__":
    main()
