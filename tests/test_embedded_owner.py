"""The embedded PostgreSQL belongs to one service: a second instance on the same data directory
refuses to start (rather than using a server the first one stops under it), a server left running
by an instance that died is taken over, and `check` reads a served directory without harm."""

import os
import signal
import subprocess
import sys

import pytest

from support.configs import EXAMPLE_KEY, GAME_EVENTS
from support.http import free_port, post
from support.twistd import REPO, listen_on, serve, wait_until_served

pytestmark = pytest.mark.twistd

EVENTS_PATH = "/apps/mygame/events/game_events"


def postmaster_pid(workdir):
    """The pid of the embedded server running in the work directory's data, or None."""
    pid_file = workdir / "attolytics-data" / "postmaster.pid"
    return int(pid_file.read_text().split()[0]) if pid_file.exists() else None


def test_a_second_instance_on_the_same_data_refuses_to_start(workdir):
    first_port, second_port = free_port(), free_port()
    with serve(workdir, "--listen", listen_on(first_port)) as first:
        assert wait_until_served(first_port, first) == (200, {"inserted": 0})
        with serve(workdir, "--listen", listen_on(second_port)) as second:
            assert second.wait(60) is not None, "the second instance did not exit:\n" + second.output
        output = second.output
        assert second.returncode == 1, output
        assert "belongs to one service" in output and "workers" in output, output
        assert "Traceback" not in output
        assert "embedded PostgreSQL stopped" not in output
        # The first one serves on, its server untouched.
        status, body = post(first_port, EVENTS_PATH, {"secret_key": EXAMPLE_KEY, "events": GAME_EVENTS})
        assert (status, body) == (200, {"inserted": 2})
    assert first.returncode == 0, first.output
    assert "embedded PostgreSQL stopped" in first.output
    assert postmaster_pid(workdir) is None


def test_with_workers_the_parent_owns_the_server_and_the_workers_use_it(workdir):
    port = free_port()
    with serve(workdir, "--listen", listen_on(port), "--workers", "2") as run:
        assert wait_until_served(port, run) == (200, {"inserted": 0})
        for _ in range(4):  # to either worker
            assert post(port, EVENTS_PATH, {"secret_key": EXAMPLE_KEY, "events": GAME_EVENTS})[0] == 200
    output = run.output
    assert run.returncode == 0, output
    assert output.count("embedded PostgreSQL stopped") == 1, output
    assert "in use by another" not in output
    assert postmaster_pid(workdir) is None


def test_a_server_left_by_an_instance_that_died_is_taken_over(workdir):
    port = free_port()
    with serve(workdir, "--listen", listen_on(port)) as died:
        wait_until_served(port, died)
        died.process.send_signal(signal.SIGKILL)
        died.wait()
    left = postmaster_pid(workdir)
    assert left is not None, "the killed instance's server should still run"
    with serve(workdir, "--listen", listen_on(port)) as run:
        assert wait_until_served(port, run) == (200, {"inserted": 0})
    assert run.returncode == 0, run.output
    assert "embedded PostgreSQL stopped" in run.output
    assert postmaster_pid(workdir) is None


def check(workdir):
    return subprocess.run([sys.executable, "-m", "attolytics", "check"], cwd=workdir, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_check_on_a_served_directory_reads_it_and_leaves_it_running(workdir):
    port = free_port()
    with serve(workdir, "--listen", listen_on(port)) as run:
        wait_until_served(port, run)
        server = postmaster_pid(workdir)
        result = check(workdir)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "another process serves" in result.stdout
        assert "ok: attolytics.conf.yaml fits the database" in result.stdout
        assert postmaster_pid(workdir) == server
        assert post(port, EVENTS_PATH, {"secret_key": EXAMPLE_KEY, "events": GAME_EVENTS})[0] == 200
    assert run.returncode == 0, run.output


def test_check_on_a_new_directory_creates_it_and_stops_its_server(workdir):
    result = check(workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (workdir / "attolytics-data" / "PG_VERSION").exists()
    assert postmaster_pid(workdir) is None


def test_a_data_directory_of_another_major_version_is_named_in_one_line(workdir):
    assert check(workdir).returncode == 0  # initdb, by the PostgreSQL pgserver ships
    (workdir / "attolytics-data" / "PG_VERSION").write_text("15\n")
    result = check(workdir)
    assert result.returncode == 1
    assert "was initialized by PostgreSQL version 15, which is not compatible" in result.stdout, result.stdout
    assert result.stderr == "" and len(result.stdout.splitlines()) == 1, result.stdout + result.stderr
    port = free_port()
    with serve(workdir, "--listen", listen_on(port)) as run:
        assert run.wait(60) is not None
    assert run.returncode == 1
    assert "was initialized by PostgreSQL version 15" in run.output
    assert "Traceback" not in run.output and "Failed postgres command" not in run.output
