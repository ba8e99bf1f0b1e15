"""The command line of `twistd attolytics` as an operator uses it: the original's spellings,
--host/--port, a top-level database_url, verbosity, and systemd's notify protocol."""

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import time
import uuid

import psycopg2
import pytest

from support.configs import SECRET, GAME_CONFIG
from test_twistd import (
    EXAMPLE_KEY,
    GAME_EVENTS,
    TWISTD,
    free_port,
    post,
    twistd,
    wait_until_served,
)

from attolytics import systemd
from attolytics.tap import tcp_endpoint

CONFIG = GAME_CONFIG.replace(SECRET, EXAMPLE_KEY)
EVENTS_PATH = "/apps/mygame/events/game_events"
# A database nobody can reach: a test that falls back to the config's database never gets ready.
UNREACHABLE = "postgresql://nobody@/attolytics_unreachable?host=/nonexistent&connect_timeout=2"
ACCESS_LINE = re.compile(r"127\.0\.0\.1 POST /apps/mygame/events/game_events 200 \d+ bytes [\d.]+ ms")
READY_WAIT = 30


class Run:
    """A twistd process started by serve(); `output` and `returncode` are set once it ended."""

    def __init__(self, process):
        self.process = process
        self.output = None
        self.returncode = None
        self.terminated = False

    def terminate(self):
        """Send SIGTERM once; serve() then only waits for the process to end."""
        self.terminated = True
        self.process.send_signal(signal.SIGTERM)


@contextlib.contextmanager
def serve(cwd, *args, env=None):
    """Run `twistd -n attolytics ARGS` in `cwd`; on leaving, stop it with SIGTERM and collect it."""
    process = subprocess.Popen(
        TWISTD + ["-n", "--pidfile=", "attolytics", *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, **(env or {})),
    )
    run = Run(process)
    try:
        yield run
    finally:
        if process.poll() is None and not run.terminated:
            process.send_signal(signal.SIGTERM)
        try:
            run.output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            run.output, _ = process.communicate(timeout=10)
            run.output += "\n[killed: twistd did not stop within 30 s of SIGTERM]"
        run.returncode = process.returncode


def wait_until_answering(port, process, seconds=READY_WAIT):
    """Poll until the port answers HTTP at all (even 503); return the status."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"twistd exited early with {process.returncode}"
        try:
            return post(port, EVENTS_PATH, {"secret_key": EXAMPLE_KEY, "events": []})[0]
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing answered on port {port} within {seconds} s")


def write_config(directory, text=CONFIG, name="app.yaml"):
    (directory / name).write_text(text)
    return name


def count_events(database_url):
    with psycopg2.connect(database_url) as connection, connection.cursor() as cur:
        cur.execute("select count(*) from game_events")
        return cur.fetchone()[0]


def post_seed_events(port):
    return post(port, EVENTS_PATH, {"secret_key": EXAMPLE_KEY, "events": GAME_EVENTS})


def listen_on(port):
    return f"tcp:{port}:interface=127.0.0.1"


def usage_error(tmp_path, *args):
    """Run twistd with these attolytics options; return (status, all output)."""
    result = twistd(tmp_path, "-n", "--pidfile=", "attolytics", *args, timeout=30)
    return result.returncode, result.stdout + result.stderr


# --schema and --config


def test_schema_option_is_the_config_option(tmp_path, database_url):
    # No ./attolytics.conf.yaml here: ignoring --schema would fail for want of a config file.
    name = write_config(tmp_path, name="schema.yaml")
    port = free_port()
    with serve(tmp_path, "--schema", name, "--db-url", database_url, "--listen", listen_on(port)) as run:
        assert wait_until_served(port, run.process, READY_WAIT) == (200, {"inserted": 0})
        assert post_seed_events(port) == (200, {"inserted": 2})
    assert run.returncode == 0, run.output
    assert count_events(database_url) == 2


def test_schema_and_config_naming_the_same_file_is_fine(tmp_path, database_url):
    name = write_config(tmp_path)
    port = free_port()
    with serve(tmp_path, "-c", name, "--schema", name, "--db-url", database_url,
               "--listen", listen_on(port)) as run:
        assert wait_until_served(port, run.process, READY_WAIT) == (200, {"inserted": 0})
    assert run.returncode == 0, run.output


def test_different_config_and_schema_is_a_usage_error(tmp_path, database_url):
    first = write_config(tmp_path, name="one.yaml")
    second = write_config(tmp_path, name="two.yaml")
    status, output = usage_error(tmp_path, "--config", first, "--schema", second,
                                 "--db-url", database_url, "--listen", listen_on(free_port()))
    assert status != 0
    assert "give either --config or --schema" in output
    assert "Traceback" not in output


# --db_url and --db-url


def test_db_url_underscore_spelling_is_the_db_url_option(tmp_path, database_url):
    config = CONFIG + f"database: {{url: '{UNREACHABLE}'}}\n"
    name = write_config(tmp_path, config)
    port = free_port()
    with serve(tmp_path, "-c", name, "--db_url", database_url, "--listen", listen_on(port)) as run:
        assert wait_until_served(port, run.process, READY_WAIT) == (200, {"inserted": 0})
        assert post_seed_events(port) == (200, {"inserted": 2})
    assert run.returncode == 0, run.output
    assert count_events(database_url) == 2
    assert not (tmp_path / "attolytics-data").exists()


def test_different_db_url_and_db_url_underscore_is_a_usage_error(tmp_path, database_url):
    name = write_config(tmp_path)
    status, output = usage_error(tmp_path, "-c", name, "--db-url", database_url,
                                 "--db_url", UNREACHABLE, "--listen", listen_on(free_port()))
    assert status != 0
    assert "give either --db-url or --db_url" in output
    assert "Traceback" not in output


# --host and --port


@pytest.mark.parametrize(
    "spelling",
    [
        ["--host", "127.0.0.1", "--port", "{port}"],
        ["-H", "127.0.0.1", "-p", "{port}"],
        ["--port", "{port}"],  # the host defaults to localhost
    ],
    ids=["long", "short", "port-only"],
)
def test_host_and_port_options_choose_the_tcp_port(tmp_path, database_url, spelling):
    port = free_port()
    # The config's listen key names another port: the options must win over it.
    config_port = free_port()
    name = write_config(tmp_path, CONFIG + f"listen: '{listen_on(config_port)}'\n")
    args = [arg.format(port=port) for arg in spelling]
    with serve(tmp_path, "-c", name, "--db-url", database_url, *args) as run:
        assert wait_until_served(port, run.process, READY_WAIT) == (200, {"inserted": 0})
        assert post_seed_events(port) == (200, {"inserted": 2})
    assert run.returncode == 0, run.output
    assert count_events(database_url) == 2


def ipv6_loopback_available():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback here")
def test_host_option_accepts_an_ipv6_address(tmp_path, database_url):
    port = free_port()
    name = write_config(tmp_path)
    with serve(tmp_path, "-c", name, "--db-url", database_url, "-H", "::1", "-p", str(port)) as run:
        deadline = time.monotonic() + READY_WAIT
        status = None
        while time.monotonic() < deadline and status != 200:
            assert run.process.poll() is None, "twistd exited early"
            connection = http.client.HTTPConnection("::1", port, timeout=5)
            try:
                connection.request("POST", EVENTS_PATH,
                                   body=f'{{"secret_key": "{EXAMPLE_KEY}", "events": []}}',
                                   headers={"Content-Type": "application/json"})
                status = connection.getresponse().status
            except OSError:
                time.sleep(0.2)
            finally:
                connection.close()
        assert status == 200
    assert run.returncode == 0, run.output


@pytest.mark.parametrize(
    "args, words",
    [
        (["--listen", "tcp:0", "--port", "8001"], "give either --listen or --host/--port"),
        (["--listen", "tcp:0", "-H", "127.0.0.1"], "give either --listen or --host/--port"),
        (["--port", "99999"], "--port 99999 is not a TCP port number"),
        (["--port", "-1"], "--port -1 is not a TCP port number"),
    ],
    ids=["listen-and-port", "listen-and-host", "port-too-big", "port-negative"],
)
def test_listen_and_port_mistakes_are_usage_errors(tmp_path, database_url, args, words):
    name = write_config(tmp_path)
    status, output = usage_error(tmp_path, "-c", name, "--db-url", database_url, *args)
    assert status != 0
    assert words in output
    assert "Traceback" not in output


def test_tcp_endpoint_for_localhost():
    assert tcp_endpoint("localhost", 8000) == "tcp:8000:interface=127.0.0.1"


def test_tcp_endpoint_keeps_other_ipv4_addresses():
    assert tcp_endpoint("0.0.0.0", 80) == "tcp:80:interface=0.0.0.0"


def test_tcp_endpoint_escapes_ipv6_colons():
    assert tcp_endpoint("::1", 8000) == "tcp:8000:interface=\\:\\:1"
    assert tcp_endpoint("fe80::1", 9) == "tcp:9:interface=fe80\\:\\:1"


# A top-level database_url key


def test_top_level_database_url_is_used(tmp_path, database_url):
    name = write_config(tmp_path, CONFIG + f"database_url: '{database_url}'\n")
    port = free_port()
    with serve(tmp_path, "-c", name, "--listen", listen_on(port)) as run:
        assert wait_until_served(port, run.process, READY_WAIT) == (200, {"inserted": 0})
        assert post_seed_events(port) == (200, {"inserted": 2})
    assert run.returncode == 0, run.output
    assert count_events(database_url) == 2
    assert not (tmp_path / "attolytics-data").exists()


def test_database_url_with_a_database_section_is_a_config_error(tmp_path, database_url):
    config = CONFIG + f"database_url: '{database_url}'\ndatabase: {{url: '{database_url}'}}\n"
    name = write_config(tmp_path, config)
    result = twistd(tmp_path, "-n", "--pidfile=", "attolytics", "-c", name,
                    "--listen", listen_on(free_port()), timeout=30)
    assert result.returncode == 1
    assert "app.yaml: database_url: give either database_url or a database section" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


# Verbosity


def run_one_request(tmp_path, database_url, *verbosity):
    """Serve, post the seed's events once, stop with SIGTERM; return the finished Run."""
    name = write_config(tmp_path)
    port = free_port()
    with serve(tmp_path, "-c", name, "--db-url", database_url, "--listen", listen_on(port),
               *verbosity) as run:
        assert wait_until_served(port, run.process, READY_WAIT) == (200, {"inserted": 0})
        assert post_seed_events(port) == (200, {"inserted": 2})
    assert count_events(database_url) == 2
    return run


# What the service logs at info level during such a run.
INFO_MESSAGES = ["listening on", "created table game_events", "ready: 1 tables checked",
                 "received SIGTERM, shutting down"]


def test_default_verbosity_logs_one_access_line_per_request(tmp_path, database_url):
    run = run_one_request(tmp_path, database_url)
    assert run.returncode == 0, run.output
    assert ACCESS_LINE.search(run.output), run.output
    for message in INFO_MESSAGES:
        assert message in run.output
    assert "Traceback" not in run.output


@pytest.mark.parametrize("flags", [["-q"], ["--quiet"], ["-q", "-q"]], ids=["q", "quiet", "qq"])
def test_quiet_logs_no_access_line_and_no_info(tmp_path, database_url, flags):
    run = run_one_request(tmp_path, database_url, *flags)
    assert run.returncode == 0, run.output
    assert "POST /apps" not in run.output, run.output
    for message in INFO_MESSAGES:
        assert message not in run.output
    assert "Traceback" not in run.output


@pytest.mark.parametrize("flags", [["-v"], ["--verbose"], ["-v", "-v"]], ids=["v", "verbose", "vv"])
def test_verbose_logs_at_least_what_the_default_does(tmp_path, database_url, flags):
    run = run_one_request(tmp_path, database_url, *flags)
    assert run.returncode == 0, run.output
    assert ACCESS_LINE.search(run.output), run.output
    for message in INFO_MESSAGES:
        assert message in run.output
    assert "Traceback" not in run.output


def test_quiet_and_verbose_cancel_out(tmp_path, database_url):
    run = run_one_request(tmp_path, database_url, "-v", "-q")
    assert run.returncode == 0, run.output
    assert ACCESS_LINE.search(run.output), run.output


# systemd's notify protocol


@contextlib.contextmanager
def notify_receiver(address):
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        receiver.bind(address)
        yield receiver
    finally:
        receiver.close()


def receive(receiver, seconds=READY_WAIT):
    """The next datagram as text; fails the test when none comes within `seconds`."""
    receiver.settimeout(seconds)
    try:
        return receiver.recv(4096).decode()
    except socket.timeout:
        raise AssertionError(f"no systemd notification within {seconds} s") from None


def wait_for_state(receiver, state, seconds=READY_WAIT):
    """Read notifications until one holds `state` as a line; return all received so far."""
    deadline = time.monotonic() + seconds
    seen = []
    while state not in [line for message in seen for line in message.splitlines()]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{state} did not arrive; got {seen}")
        seen.append(receive(receiver, remaining))
    return seen


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract-name"])
def test_systemd_ready_after_listening_and_stopping_on_sigterm(tmp_path, database_url, abstract):
    if abstract:  # NOTIFY_SOCKET=@name is a socket in the abstract namespace
        unique = f"attolytics-test-{uuid.uuid4().hex}"
        address, notify_socket = "\0" + unique, "@" + unique
    else:
        address = notify_socket = str(tmp_path / "notify.sock")
    name = write_config(tmp_path)
    port = free_port()
    with notify_receiver(address) as receiver:
        with serve(tmp_path, "-c", name, "--db-url", database_url, "--listen", listen_on(port),
                   env={"NOTIFY_SOCKET": notify_socket}) as run:
            assert wait_for_state(receiver, "READY=1") == ["READY=1"]
            # READY=1 comes once the port is open: it answers right away (503 until the database is up).
            status, _ = post(port, EVENTS_PATH, {"secret_key": EXAMPLE_KEY, "events": []})
            assert status in (200, 503)
            assert wait_until_served(port, run.process, READY_WAIT) == (200, {"inserted": 0})
            run.terminate()
            assert wait_for_state(receiver, "STOPPING=1") == ["STOPPING=1"]
    assert run.returncode == 0, run.output
    assert "could not notify systemd" not in run.output
    assert "Traceback" not in run.output


def drain(receiver, quiet_seconds=1.0):
    """Every notification still queued (the sender may be gone), until none comes for a while."""
    messages = []
    receiver.settimeout(quiet_seconds)
    with contextlib.suppress(socket.timeout):
        while True:
            messages.append(receiver.recv(4096).decode())
    return messages


def test_sigterm_right_after_ready_stops_cleanly(tmp_path, database_url):
    # systemd may stop a Type=notify unit as soon as READY=1 arrives; that stop must be clean too.
    address = str(tmp_path / "notify.sock")
    name = write_config(tmp_path)
    port = free_port()
    with notify_receiver(address) as receiver:
        with serve(tmp_path, "-c", name, "--db-url", database_url, "--listen", listen_on(port),
                   env={"NOTIFY_SOCKET": address}) as run:
            assert wait_for_state(receiver, "READY=1") == ["READY=1"]
            run.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                run.process.wait(timeout=30)
        messages = drain(receiver)
    assert run.returncode == 0, f"exit status {run.returncode}, output:\n{run.output}"
    assert messages == ["STOPPING=1"]
    assert "received SIGTERM, shutting down" in run.output


def test_sigterm_while_connecting_to_the_database_stops_cleanly(tmp_path):
    # A "server" that accepts TCP connections but never answers: the connection stays underway.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        silent_url = f"postgresql://nobody@127.0.0.1:{silent.getsockname()[1]}/none"
        name = write_config(tmp_path)
        port = free_port()
        with serve(tmp_path, "-c", name, "--db-url", silent_url, "--listen", listen_on(port)) as run:
            assert wait_until_answering(port, run.process) == 503
        assert run.returncode == 0, f"exit status {run.returncode}, output:\n{run.output}"
    assert "received SIGTERM, shutting down" in run.output
    assert "Traceback" not in run.output


def test_no_notify_socket_still_runs(tmp_path, database_url):
    name = write_config(tmp_path)
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "NOTIFY_SOCKET"}
    process = subprocess.Popen(
        TWISTD + ["-n", "--pidfile=", "attolytics", "-c", name, "--db-url", database_url,
                  "--listen", listen_on(port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        assert wait_until_served(port, process, READY_WAIT) == (200, {"inserted": 0})
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate(timeout=10)
    assert process.returncode == 0, output
    assert "could not notify systemd" not in output


def test_notify_without_notify_socket_returns_false(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False


def test_notify_with_empty_notify_socket_returns_false(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "")
    assert systemd.notify("READY=1") is False


def test_notify_sends_the_state(tmp_path, monkeypatch):
    address = str(tmp_path / "n.sock")
    with notify_receiver(address) as receiver:
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        assert systemd.notify("READY=1") is True
        assert receive(receiver, 5) == "READY=1"


def test_notify_to_a_missing_socket_returns_false(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    assert systemd.notify("READY=1") is False
