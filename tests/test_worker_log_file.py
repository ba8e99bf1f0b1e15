"""`workers: 2` under a daemon's --logfile: every line of every process arrives whole, in text
and JSON, across a reload and a rotation (SIGUSR1)."""

import json
import os
import re
import signal

import pytest

from support.http import free_port, post
from support.twistd import STOP_TIMEOUT, listen_on, run_twistd, wait_until_served
from support.waiting import wait_until

pytestmark = pytest.mark.twistd

KEY = "log-file-test-key"
PATH = "/apps/game/events/clicks"
TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[[^\]]+\] .*")
REQUESTS = 10


def config(port: int, database_url: str) -> str:
    return (f"listen: {listen_on(port)}\ndatabase_url: '{database_url}'\nworkers: 2\nshutdown_timeout: 5\n"
            f"tables:\n  clicks:\n    columns:\n      - {{name: n, type: i32}}\n"
            f"apps:\n  game:\n    secret_keys: [{KEY}]\n    tables: [clicks]\n")


def whole(line: str, log_format: str) -> bool:
    """Whether `line` is one complete log line of the format."""
    if log_format == "text":
        return TEXT_LINE.fullmatch(line) is not None
    try:
        return {"time", "level", "namespace", "message"} <= json.loads(line).keys()
    except ValueError:
        return False


def stop_daemon(pid_file) -> None:
    os.kill(int(pid_file.read_text()), signal.SIGTERM)
    wait_until(lambda: not pid_file.exists(), STOP_TIMEOUT, "the daemon stops")


def post_some(port: int, count: int) -> None:
    for n in range(count):
        assert post(port, PATH, {"secret_key": KEY, "events": [{"n": n}]}) == (200, {"inserted": 1})


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_every_line_of_every_process_arrives_whole(tmp_path, database_url, log_format):
    port = free_port()
    (tmp_path / "app.yaml").write_text(config(port, database_url))
    pid_file = tmp_path / "twistd.pid"
    started = run_twistd(tmp_path, "--pidfile=twistd.pid", "--logfile=d.log", "attolytics", "-c", "app.yaml",
                         "--log-format", log_format)
    assert started.returncode == 0, started.errors
    log = tmp_path / "d.log"
    try:
        wait_until_served(port, path=PATH, key=KEY)
        wait_until(lambda: "all 2 workers serve" in log.read_text(), what="both workers serving")
        post_some(port, REQUESTS // 2)
        os.kill(int(pid_file.read_text()), signal.SIGHUP)
        wait_until(lambda: log.read_text().count("reloaded app.yaml") == 3, what="the parent and both workers reloaded")
        # As `systemctl kill -s USR1` does: the parent rotates, the workers go on.
        workers = re.findall(r"started worker \d \(pid (\d+)\)", log.read_text())
        for pid in [pid_file.read_text(), *workers]:
            os.kill(int(pid), signal.SIGUSR1)
        wait_until(lambda: (tmp_path / "d.log.1").exists(), what="the log rotated")
        post_some(port, REQUESTS - REQUESTS // 2)
    finally:
        stop_daemon(pid_file)
    lines = (tmp_path / "d.log.1").read_text().splitlines() + log.read_text().splitlines()
    assert [line for line in lines if not whole(line, log_format)] == []
    text = "\n".join(lines)
    assert text.count("POST /apps/game/events/clicks 200") == REQUESTS + 1  # and wait_until_served()'s
    assert text.count("received SIGTERM, shutting down") == 3  # the parent's and each worker's
    assert "all 2 workers serve" in (tmp_path / "d.log.1").read_text()
    assert "Server Shut Down." in log.read_text()
    assert " ended: " not in text
