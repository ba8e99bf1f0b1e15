"""Where the service's time goes: an embedded PostgreSQL, one bench/serve.py under wrk, sampled
by py-spy; prints the functions that hold the most samples, by their own time and with callees.

    python bench/profile.py [--mode attolytics] [--events 10] [--escaped] [--seconds 10] [--top 25]

Needs wrk and py-spy (pip install py-spy; sampling another process may need root or
CAP_SYS_PTRACE).
"""

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import SEGMENT_ROUTE, SHAPES, ROUTE, Server, body_file, run_wrk, say, segment_bodies  # noqa: E402


def collapsed_samples(path: Path) -> collections.Counter:
    """stack (a tuple of frames, outermost first) -> samples, from py-spy's raw output."""
    stacks = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def report(stacks: collections.Counter, top: int) -> None:
    """The frames with the most samples of their own, and with their callees."""
    total = sum(stacks.values())
    own, inclusive = collections.Counter(), collections.Counter()
    for stack, count in stacks.items():
        own[_frame(stack[-1])] += count
        for frame in set(map(_frame, stack)):
            inclusive[frame] += count
    for title, counter in (("own time", own), ("with callees", inclusive)):
        say(f"\n{title} (of {total} samples):")
        for frame, count in counter.most_common(top):
            say(f"  {100 * count / total:5.1f}%  {frame}")


def _frame(frame: str) -> str:
    """A frame without its line number: `function (file)`."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0].rstrip(')')})" if where else name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="attolytics", choices=["attolytics", "attolytics-ids", "segment", "null"],
                        help="segment: 100 track messages a request to /v1/batch, filling a typed table")
    parser.add_argument("--events", type=int, default=10, choices=SHAPES)
    parser.add_argument("--escaped", action="store_true", help="an event_type written in escapes")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for tool in ("wrk", "py-spy"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing")
    sys.path.insert(0, str(HERE.parent))
    from attolytics.storage.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="attolytics-profile-") as tmp:
        tmp = Path(tmp)
        tmp.chmod(0o755)  # the embedded server may run as another user
        pg = EmbeddedPostgres(str(tmp / "pgdata"))
        db_url = pg.start()
        try:
            server = Server(args.mode, db_url)
            try:
                body = body_file(tmp, args.events, args.mode == "attolytics-ids", args.escaped)
                route = ROUTE
                if args.mode == "segment":
                    (_, body), route, args.events = segment_bodies(tmp), SEGMENT_ROUTE, 100
                samples = tmp / "samples.txt"
                spy = subprocess.Popen(["py-spy", "record", "--pid", str(server.process.pid), "--format", "raw",
                                        "--duration", str(args.seconds), "--rate", "200", "--nonblocking",
                                        "--output", str(samples)], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
                result = run_wrk(server.port, body, args.seconds, args.connections, route=route)
                spy.wait(timeout=60)
                say(f"{args.mode}, {args.events} events a request{', escaped' if args.escaped else ''}: "
                    f"{result['rps'] * args.events:,.0f} events/s")
                report(collapsed_samples(samples), args.top)
            finally:
                server.stop()
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
