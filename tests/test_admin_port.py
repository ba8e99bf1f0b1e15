"""The admin port (admin_listen, --admin-listen): /metrics served there only, the public port
answering 404 for it; health and readiness on both; shared by workers as the public port is; a
mistake in its address named, without a traceback."""

import json
import os
import re
import signal
import socket

import pytest
import pytest_twisted

from support.configs import GAME_CONFIG, START
from support.http import Client, exchange, free_port
from support.twistd import listen_on, run_twistd, serve, wait_until_ready
from support.waiting import wait_until

ADMIN_ON_ANY_PORT = "admin_listen: 'tcp:0:interface=127.0.0.1'\n"


@pytest.mark.service
@pytest_twisted.ensureDeferred
async def test_metrics_move_to_the_admin_port_and_the_public_one_answers_404(start):
    running = await start(GAME_CONFIG + ADMIN_ON_ANY_PORT)
    public, admin = running.client, Client(running.admin_port)
    assert (await public.post_events("mygame", "game_events", [START])).status == 200

    refused = await public.request("GET", "/metrics")
    assert refused.status == 404
    assert refused.json() == {"error": "no such route; the metrics are served on the admin port"}
    metrics = await admin.request("GET", "/metrics")
    assert metrics.status == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'attolytics_events_inserted_total{app="mygame",table="game_events"} 1.0' in metrics.body.decode()

    for client in (public, admin):
        assert (await client.request("GET", "/healthz")).json() == {"status": "ok"}
        assert (await client.request("GET", "/readyz")).json() == {"ready": True}
    # The live view is never served on the public port.
    assert (await public.request("GET", "/live")).status == 404


@pytest.mark.service
@pytest_twisted.ensureDeferred
async def test_the_admin_port_serves_nothing_of_the_event_routes(start):
    running = await start(GAME_CONFIG + ADMIN_ON_ANY_PORT)
    admin = Client(running.admin_port)
    body = {"secret_key": "any", "events": [START]}
    posted = await admin.request("POST", "/apps/mygame/events/game_events", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    assert posted.status == 404
    assert posted.json() == {"error": "no such route on the admin port"}
    for path in ("/openapi.json", "/attolytics.js", "/v1/batch", "/"):
        assert (await admin.request("GET", path)).status == 404, path
    not_allowed = await admin.request("POST", "/metrics", b"")
    assert not_allowed.status == 405
    assert not_allowed.headers["allow"] == "GET, HEAD"


@pytest.mark.service
@pytest_twisted.ensureDeferred
async def test_without_an_admin_port_metrics_stay_public_and_no_live_view_is_served(start):
    running = await start(GAME_CONFIG)
    assert (await running.client.request("GET", "/metrics")).status == 200
    assert (await running.client.request("GET", "/live")).status == 404
    assert running.service.namedServices.get("admin") is None


def _workers_config(port: int, admin_port: int, database_url: str) -> str:
    return (f"listen: {listen_on(port)}\nadmin_listen: {listen_on(admin_port)}\n"
            f"database_url: '{database_url}'\nworkers: 2\nshutdown_timeout: 5\n" + GAME_CONFIG)


def _metrics_answered_by(output: str) -> set[str]:
    """The workers that logged an answer to GET /metrics."""
    return {line.split("worker ", 1)[1].split("]", 1)[0]
            for line in output.splitlines() if "GET /metrics 200" in line and "worker " in line}


@pytest.mark.twistd
def test_workers_share_the_admin_port(tmp_path, database_url):
    port, admin_port = free_port(), free_port()
    (tmp_path / "app.yaml").write_text(_workers_config(port, admin_port, database_url))
    with serve(tmp_path, "-c", "app.yaml") as run:
        wait_until_ready(port, run)
        wait_until(lambda: all(f"database#info worker {n}] ready" in run.output for n in (1, 2)),
                   what="both workers ready")
        pids = {int(n): int(pid) for n, pid in re.findall(r"started worker (\d+) \(pid (\d+)\)", run.output)}
        # With one worker stopped, the other answers every scrape: each worker serves the socket.
        for paused, serving in ((1, "2"), (2, "1")):
            os.kill(pids[paused], signal.SIGSTOP)
            try:
                for _ in range(3):
                    answer = exchange(admin_port, "GET", "/metrics")
                    assert answer.status == 200
                    assert b"attolytics_requests_total" in answer.body
                wait_until(lambda: serving in _metrics_answered_by(run.output), what=f"worker {serving}'s answer")
            finally:
                os.kill(pids[paused], signal.SIGCONT)
        assert exchange(port, "GET", "/metrics").status == 404
        assert exchange(admin_port, "GET", "/healthz").status == 200
    assert "admin port on" in run.output
    assert run.returncode == 0


@pytest.mark.twistd
@pytest.mark.parametrize("where", ["file", "option"])
@pytest.mark.parametrize("description", ["nonsense:9100", "ssl:0", "systemd:domain=INET:index=0"])
def test_an_admin_address_that_cannot_be_used_is_named(tmp_path, database_url, where, description):
    config = f"listen: {listen_on(free_port())}\ndatabase_url: '{database_url}'\n" + GAME_CONFIG
    args = ["-n", "--pidfile=", "attolytics", "-c", "app.yaml"]
    if where == "file":
        config += f"admin_listen: '{description}'\n"
    else:
        args += ["--admin-listen", description]
    (tmp_path / "app.yaml").write_text(config)
    run = run_twistd(tmp_path, *args)
    source = "app.yaml: admin_listen" if where == "file" else "--admin-listen"
    assert run.returncode == 1
    assert f"attolytics: {source}: cannot use '{description}'" in run.errors
    assert "Traceback" not in run.output + run.errors


@pytest.mark.twistd
def test_an_empty_admin_listen_option_is_a_usage_error(tmp_path, database_url):
    (tmp_path / "app.yaml").write_text(f"database_url: '{database_url}'\n" + GAME_CONFIG)
    run = run_twistd(tmp_path, "-n", "--pidfile=", "attolytics", "-c", "app.yaml", "--admin-listen", "")
    assert run.returncode == 1
    assert "--admin-listen needs an endpoint description" in run.output + run.errors


@pytest.mark.twistd
@pytest.mark.parametrize("workers", [1, 2])
def test_an_admin_port_in_use_is_named_by_its_key(tmp_path, database_url, workers):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    with taken:
        (tmp_path / "app.yaml").write_text(f"listen: {listen_on(free_port())}\nadmin_listen: {listen_on(port)}\n"
                                           f"workers: {workers}\ndatabase_url: '{database_url}'\n" + GAME_CONFIG)
        run = run_twistd(tmp_path, "-n", "--pidfile=", "attolytics", "-c", "app.yaml")
    assert run.returncode != 0
    assert f"cannot listen on {listen_on(port)} (admin_listen)" in run.output + run.errors
    assert "Traceback" not in run.output + run.errors


@pytest.mark.twistd
def test_the_admin_port_option_wins_over_the_file(tmp_path, database_url):
    port, admin_port, file_port = free_port(), free_port(), free_port()
    (tmp_path / "app.yaml").write_text(f"listen: {listen_on(port)}\nadmin_listen: {listen_on(file_port)}\n"
                                       f"database_url: '{database_url}'\n" + GAME_CONFIG)
    with serve(tmp_path, "-c", "app.yaml", "--admin-listen", listen_on(admin_port)) as run:
        wait_until_ready(port, run)
        assert exchange(admin_port, "GET", "/metrics").status == 200
        with pytest.raises(OSError):
            exchange(file_port, "GET", "/metrics")
    # The log says which port is the admin one.
    assert f"port={admin_port}), as {listen_on(admin_port)} (admin_listen) says" in run.output


@pytest.mark.twistd
def test_a_reload_keeps_the_admin_port(tmp_path, database_url):
    port, admin_port = free_port(), free_port()
    (tmp_path / "app.yaml").write_text(f"listen: {listen_on(port)}\nadmin_listen: {listen_on(admin_port)}\n"
                                       f"database_url: '{database_url}'\n" + GAME_CONFIG)
    with serve(tmp_path, "-c", "app.yaml") as run:
        wait_until_ready(port, run)
        (tmp_path / "app.yaml").write_text(f"listen: {listen_on(port)}\nadmin_listen: {listen_on(free_port())}\n"
                                           f"database_url: '{database_url}'\n" + GAME_CONFIG)
        os.kill(run.process.pid, signal.SIGHUP)
        wait_until(lambda: "reloaded app.yaml" in run.output, what="the reload")
        assert exchange(admin_port, "GET", "/metrics").status == 200
        assert exchange(port, "GET", "/metrics").status == 404
    assert "app.yaml: admin_listen changes only with a restart; it stays as it is" in run.output


@pytest.mark.service
@pytest_twisted.ensureDeferred
async def test_the_public_openapi_document_leaves_out_the_metrics_the_admin_port_serves(start):
    with_admin = await start(GAME_CONFIG + ADMIN_ON_ANY_PORT)
    paths = (await with_admin.client.request("GET", "/openapi.json")).json()["paths"]
    assert "/metrics" not in paths
    assert {"/healthz", "/readyz", "/apps/mygame/events/game_events"} <= set(paths)
    without = await start(GAME_CONFIG)
    assert "/metrics" in (await without.client.request("GET", "/openapi.json")).json()["paths"]
