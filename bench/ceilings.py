"""The limits under the service, measured in the same run: PostgreSQL's own ingest limit (COPY in
large batches from two connections, nothing else in the way), and the CPU each side spends:
PostgreSQL's (postmaster and backends, from /proc) and the load generator's."""

import io
import os
import resource
import threading
import time
from pathlib import Path

import psycopg2

# The table COPY fills: game_events' columns, in a table of its own.
COPY_TABLE = "copy_ceiling"
ROWS_PER_COPY = 2000


def _cpu_of(pid: int, with_reaped: bool = False) -> float:
    """CPU seconds (user and system) of a process; with its children that it has waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if with_reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds(data_dir: str) -> float:
    """CPU seconds PostgreSQL has used so far: the postmaster, the backends and workers it has
    reaped, and those running now."""
    postmaster = int(Path(data_dir, "postmaster.pid").read_text().split()[0])
    total = _cpu_of(postmaster, with_reaped=True)
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    for child in children:
        try:
            total += _cpu_of(int(child))
        except (FileNotFoundError, ProcessLookupError):
            pass  # it ended meanwhile, and the postmaster's reaped time holds it
    return total


def load_generator_cpu_seconds() -> float:
    """CPU seconds of this process's children that have ended (wrk's runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def copy_ceiling(db_url: str, data_dir: str, seconds: float, event: dict, connections: int = 2) -> dict:
    """Rows/s when `connections` clients COPY `event` as rows, ROWS_PER_COPY a COPY (each its own
    transaction), for `seconds`; and the CPU per row of PostgreSQL and of the clients."""
    with psycopg2.connect(db_url) as connection, connection.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {COPY_TABLE}; CREATE TABLE {COPY_TABLE} "
                    "(timestamp bigint NOT NULL, event_type text NOT NULL, score bigint)")
    line = f"{event['timestamp']}\t{event['event_type']}\t{event['score']}\n".encode()
    chunk = line * ROWS_PER_COPY
    counts = [0] * connections
    deadline = [0.0]

    def copy_until_deadline(slot: int) -> None:
        connection = psycopg2.connect(db_url)
        connection.autocommit = True
        with connection.cursor() as cur:
            while time.monotonic() < deadline[0]:
                cur.copy_expert(f"COPY {COPY_TABLE} FROM STDIN", io.BytesIO(chunk))
                counts[slot] += ROWS_PER_COPY
        connection.close()

    threads = [threading.Thread(target=copy_until_deadline, args=(slot,)) for slot in range(connections)]
    postgres, client, started = postgres_cpu_seconds(data_dir), time.process_time(), time.monotonic()
    deadline[0] = started + seconds
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    rows = sum(counts)
    return {
        "rows_per_s": rows / elapsed,
        "postgres_cpu_us": (postgres_cpu_seconds(data_dir) - postgres) * 1e6 / rows,
        "client_cpu_us": (time.process_time() - client) * 1e6 / rows,
    }
