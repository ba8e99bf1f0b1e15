"""No secret of the configuration (the database password, the apps' secret keys) shows on any
process's command line, which every local user can read (`ps -eo args`), with workers too."""

import os
from pathlib import Path

import pytest

from support.http import free_port
from support.twistd import listen_on, serve, wait_until_served
from support.waiting import wait_until

pytestmark = pytest.mark.twistd

PASSWORD = "Pw-0f-the-database-4c1e"
KEYS = ("first-secret-key-9d27", "second-secret-key-61b0")
PATH = "/apps/game/events/clicks"


def config(port: int, database_url: str) -> str:
    # The test server lets a local user in without asking for the password; libpq sends it only
    # when asked, so the URL may carry one.
    url = f"{database_url} password={PASSWORD}"
    return (f"listen: {listen_on(port)}\ndatabase_url: '{url}'\nworkers: 2\nshutdown_timeout: 5\n"
            f"tables:\n  clicks:\n    columns:\n      - {{name: n, type: i32}}\n"
            f"apps:\n  game:\n    secret_keys: [{KEYS[0]}]\n    tables: [clicks]\n"
            f"  other:\n    secret_keys: [{KEYS[1]}]\n    tables: [clicks]\n")


def command_lines() -> dict[int, str]:
    """Every process's command line that this user can read, by pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:  # ended meanwhile
                pass
    return found


def test_no_secret_on_any_command_line(tmp_path, database_url):
    port = free_port()
    (tmp_path / "app.yaml").write_text(config(port, database_url))
    with serve(tmp_path, "-c", "app.yaml") as run:
        wait_until_served(port, run, path=PATH, key=KEYS[0])
        wait_until(lambda: "all 2 workers serve" in run.output, what="both workers serving")
        lines = command_lines()
        workers = [pid for pid, line in lines.items() if "attolytics.worker" in line and str(run.process.pid)
                   in Path(f"/proc/{pid}/stat").read_text().split()[3:4]]
        assert len(workers) == 2, lines
        assert "attolytics" in lines[run.process.pid]
        for secret in (PASSWORD, *KEYS):
            assert [line for line in lines.values() if secret in line] == []
    assert run.returncode == 0, run.output[-3000:]
