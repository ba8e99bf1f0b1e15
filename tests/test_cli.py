"""The command line of `twistd attolytics` as an operator uses it: --schema and --db_url as other
names of --config and --db-url, --host/--port, a top-level database_url, verbosity, and systemd's
notify protocol."""

import re
import socket
import uuid

import pytest

import attolytics
from support.configs import EXAMPLE_KEY, GAME_CONFIG, GAME_EVENTS, SECRET
from support.http import free_port, post
from support.postgres import query
from support.twistd import (
    listen_on,
    notify_receiver,
    run_twistd,
    serve,
    wait_for_notification,
    wait_until_answering,
    wait_until_served,
)

pytestmark = pytest.mark.twistd

CONFIG = GAME_CONFIG.replace(SECRET, EXAMPLE_KEY)
EVENTS_PATH = "/apps/mygame/events/game_events"
# A database nobody can reach: a test that falls back to the config's database never gets ready.
UNREACHABLE = "postgresql://nobody@/attolytics_unreachable?host=/nonexistent&connect_timeout=2"
ACCESS_LINE = re.compile(r"127\.0\.0\.1 POST /apps/mygame/events/game_events 200 \d+ bytes [\d.]+ ms")
READY_WAIT = 30


def write_config(directory, text=CONFIG, name="app.yaml"):
    (directory / name).write_text(text)
    return name


def count_events(database_url):
    return query(database_url, "select count(*) from game_events")[0][0]


def post_game_events(port):
    return post(port, EVENTS_PATH, {"secret_key": EXAMPLE_KEY, "events": GAME_EVENTS})


def usage_error(tmp_path, *args):
    """Run twistd with these attolytics options; return (status, all output)."""
    result = run_twistd(tmp_path, "-n", "--pidfile=", "attolytics", *args, seconds=30)
    return result.returncode, result.output + result.errors


# --schema and --config


def test_schema_option_is_the_config_option(tmp_path, database_url):
    # No ./attolytics.conf.yaml here: ignoring --schema would fail for want of a config file.
    name = write_config(tmp_path, name="schema.yaml")
    port = free_port()
    with serve(tmp_path, "--schema", name, "--db-url", database_url, "--listen", listen_on(port)) as run:
        assert wait_until_served(port, run, READY_WAIT) == (200, {"inserted": 0})
        assert post_game_events(port) == (200, {"inserted": 2})
    assert run.returncode == 0, run.output
    assert count_events(database_url) == 2


def test_schema_and_config_naming_the_same_file_is_fine(tmp_path, database_url):
    name = write_config(tmp_path)
    port = free_port()
    with serve(tmp_path, "-c", name, "--schema", name, "--db-url", database_url,
               "--listen", listen_on(port)) as run:
        assert wait_until_served(port, run, READY_WAIT) == (200, {"inserted": 0})
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
        assert wait_until_served(port, run, READY_WAIT) == (200, {"inserted": 0})
        assert post_game_events(port) == (200, {"inserted": 2})
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
        assert wait_until_served(port, run, READY_WAIT) == (200, {"inserted": 0})
        assert post_game_events(port) == (200, {"inserted": 2})
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
        assert wait_until_served(port, run, READY_WAIT, host="::1") == (200, {"inserted": 0})
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


@pytest.mark.parametrize(
    "args, line",
    [
        (["--listen", "tcp:0", "--port", "8001"], "give either --listen or --host/--port, not both"),
        (["--workers", "0"], "--workers 0 must be 1 or more"),
        (["--colour", "blue"], "option --colour not recognized"),
    ],
    ids=["listen-and-port", "no-workers", "unknown"],
)
def test_an_option_mistake_is_one_line_naming_it(tmp_path, args, line):
    status, output = usage_error(tmp_path, *args)
    assert status == 1
    assert output.strip() == f"twistd attolytics: {line}"


def test_version_is_attolytics_version(tmp_path):
    result = run_twistd(tmp_path, "attolytics", "--version", seconds=30)
    assert result.returncode == 0, result.errors
    assert result.output.strip() == f"attolytics {attolytics.__version__}"
    assert not (tmp_path / "twistd.pid").exists()


# A top-level database_url key


def test_top_level_database_url_is_used(tmp_path, database_url):
    name = write_config(tmp_path, CONFIG + f"database_url: '{database_url}'\n")
    port = free_port()
    with serve(tmp_path, "-c", name, "--listen", listen_on(port)) as run:
        assert wait_until_served(port, run, READY_WAIT) == (200, {"inserted": 0})
        assert post_game_events(port) == (200, {"inserted": 2})
    assert run.returncode == 0, run.output
    assert count_events(database_url) == 2
    assert not (tmp_path / "attolytics-data").exists()


def test_database_url_with_a_database_section_is_a_config_error(tmp_path, database_url):
    config = CONFIG + f"database_url: '{database_url}'\ndatabase: {{url: '{database_url}'}}\n"
    name = write_config(tmp_path, config)
    result = run_twistd(tmp_path, "-n", "--pidfile=", "attolytics", "-c", name,
                        "--listen", listen_on(free_port()), seconds=30)
    assert result.returncode == 1
    assert "app.yaml: database_url: give either database_url or a database section" in result.errors
    assert "Traceback" not in result.output + result.errors


# Verbosity


def run_one_request(tmp_path, database_url, *verbosity):
    """Serve, post the README's two events once, stop with SIGTERM; return the ended Twistd."""
    name = write_config(tmp_path)
    port = free_port()
    with serve(tmp_path, "-c", name, "--db-url", database_url, "--listen", listen_on(port),
               *verbosity) as run:
        assert wait_until_served(port, run, READY_WAIT) == (200, {"inserted": 0})
        assert post_game_events(port) == (200, {"inserted": 2})
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
    assert "Starting factory" not in run.output
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


def test_quiet_shows_where_the_embedded_database_is_and_no_factory(tmp_path):
    name = write_config(tmp_path)  # no database: the embedded one
    port = free_port()
    with serve(tmp_path, "-c", name, "--listen", listen_on(port), "-q") as run:
        assert wait_until_served(port, run, READY_WAIT) == (200, {"inserted": 0})
    assert run.returncode == 0, run.output
    assert "embedded PostgreSQL is running; connect with: psql 'postgresql://" in run.output
    assert "Starting factory" not in run.output and "Stopping factory" not in run.output


def test_quiet_and_verbose_cancel_out(tmp_path, database_url):
    run = run_one_request(tmp_path, database_url, "-v", "-q")
    assert run.returncode == 0, run.output
    assert ACCESS_LINE.search(run.output), run.output


# systemd's notify protocol


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
            assert wait_for_notification(receiver, "READY=1", READY_WAIT) == ["READY=1"]
            # READY=1 comes once the port is open: it answers right away (503 until the database is up).
            status, _ = post(port, EVENTS_PATH, {"secret_key": EXAMPLE_KEY, "events": []})
            assert status in (200, 503)
            assert wait_until_served(port, run, READY_WAIT) == (200, {"inserted": 0})
            run.terminate()
            assert wait_for_notification(receiver, "STOPPING=1", READY_WAIT) == ["STOPPING=1"]
    assert run.returncode == 0, run.output
    assert "could not notify systemd" not in run.output
    assert "Traceback" not in run.output


def drain(receiver):
    """Every notification still queued. Called once the sender has exited, when all it sent is
    already in the queue: nothing is waited for."""
    messages = []
    receiver.setblocking(False)
    try:
        while True:
            messages.append(receiver.recv(4096).decode())
    except BlockingIOError:
        return messages


def test_sigterm_right_after_ready_stops_cleanly(tmp_path, database_url):
    # systemd may stop a Type=notify unit as soon as READY=1 arrives; that stop must be clean too.
    address = str(tmp_path / "notify.sock")
    name = write_config(tmp_path)
    port = free_port()
    with notify_receiver(address) as receiver:
        with serve(tmp_path, "-c", name, "--db-url", database_url, "--listen", listen_on(port),
                   env={"NOTIFY_SOCKET": address}) as run:
            assert wait_for_notification(receiver, "READY=1", READY_WAIT) == ["READY=1"]
            run.terminate()
            run.wait(30)  # killed if it does not end in time, and then not 0 below
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
            assert wait_until_answering(port, run, READY_WAIT) == 503
        assert run.returncode == 0, f"exit status {run.returncode}, output:\n{run.output}"
    assert "received SIGTERM, shutting down" in run.output
    assert "Traceback" not in run.output


def test_no_notify_socket_still_runs(tmp_path, database_url):
    name = write_config(tmp_path)
    port = free_port()
    with serve(tmp_path, "-c", name, "--db-url", database_url, "--listen", listen_on(port),
               env={"NOTIFY_SOCKET": None}) as run:
        assert wait_until_served(port, run, READY_WAIT) == (200, {"inserted": 0})
    assert run.returncode == 0, run.output
    assert "could not notify systemd" not in run.output
