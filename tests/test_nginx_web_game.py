"""What a web game needs, through a real nginx running contrib/nginx.conf's server block: the
browser client at /attolytics.js, both event routes and their preflights; and a page in Chromium
that loads the client through nginx sends its events through nginx too. The instance's own pages
(/metrics, /healthz, /readyz, /openapi.json) are not passed on."""

import base64
import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from support.browser import chromium
from support.configs import clicks_config
from support.http import exchange, free_port
from support.nginx import nginx_binary, nginx_in_front
from support.postgres import query
from support.twistd import listen_on, serve, wait_until_served
from support.waiting import wait_until

KEY = "nginx-web-game-key"
PAGE_ORIGIN = "http://localhost:1"
CONFIG = clicks_config(KEY)
ARRIVAL_WAIT = 30


@contextlib.contextmanager
def game_behind_nginx(tmp_path, database_url, config: str = CONFIG):
    """One twistd instance of `config` behind nginx; yields (nginx, the instance's port)."""
    nginx_binary()  # skipped (failed under CI) before anything starts, when nginx is missing
    port = free_port()
    directory = tmp_path / "instance"
    directory.mkdir()
    (directory / "app.yaml").write_text(f"listen: {listen_on(port)}\ndatabase_url: '{database_url}'\n{config}")
    with serve(directory, "-c", "app.yaml") as instance:
        wait_until_served(port, instance, path="/apps/game/events/clicks", key=KEY)
        with nginx_in_front(tmp_path / "nginx", [port]) as nginx:
            yield nginx, port


@pytest.mark.twistd
def test_the_script_the_event_routes_and_their_preflights_are_passed_on(tmp_path, database_url):
    with game_behind_nginx(tmp_path, database_url) as (nginx, port):
        script = exchange(nginx.port, "GET", "/attolytics.js")
        assert script.status == 200 and script.headers["content-type"] == "text/javascript; charset=utf-8"
        assert script.body == exchange(port, "GET", "/attolytics.js").body
        zipped = exchange(nginx.port, "GET", "/attolytics.js", headers={"Accept-Encoding": "gzip"})
        assert zipped.headers.get("content-encoding") == "gzip"
        preflight = {"Origin": PAGE_ORIGIN, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "content-type"}
        for path, event in (("/apps/game/events/clicks", {"client": 1}),
                            ("/apps/game/events", {"_t": "clicks", "client": 2})):
            asked = exchange(nginx.port, "OPTIONS", path, headers=preflight)
            assert asked.status == 204 and asked.headers["access-control-allow-origin"] == "*", path
            body = json.dumps({"secret_key": KEY, "events": [event]}).encode()
            posted = exchange(nginx.port, "POST", path, body,
                              {"Content-Type": "application/json", "Origin": PAGE_ORIGIN})
            assert posted.status == 200 and posted.json() == {"inserted": 1, "duplicates": 0}, path
        for path in ("/metrics", "/healthz", "/readyz", "/openapi.json", "/"):
            assert exchange(nginx.port, "GET", path).status == 404, path
            assert exchange(port, "GET", path).status in (200, 404), path
        passed_on = {(line.method, line.uri) for line in nginx.logged() if line.upstreams}
        assert passed_on == {("GET", "/attolytics.js"), ("OPTIONS", "/apps/game/events/clicks"),
                             ("POST", "/apps/game/events/clicks"), ("OPTIONS", "/apps/game/events"),
                             ("POST", "/apps/game/events")}
    assert sorted(query(database_url, "select client from clicks")) == [(1,), (2,)]


@pytest.mark.twistd
def test_segments_api_is_passed_on_with_the_scheme_nginx_was_reached_by(tmp_path, database_url):
    """analytics.js' settings, a batch and RudderStack's source configuration go through nginx;
    the settings send the SDK back through it, by the scheme nginx says (X-Forwarded-Proto)."""
    config = "trusted_proxies: [127.0.0.1]\n" + CONFIG + "    segment: {schema: web}\n"
    with game_behind_nginx(tmp_path, database_url, config) as (nginx, port):
        settings = exchange(nginx.port, "GET", f"/v1/projects/{KEY}/settings", headers={"Origin": PAGE_ORIGIN})
        assert settings.status == 200, settings.body
        io = settings.json()["integrations"]["Segment.io"]
        assert io["apiHost"].endswith("/v1") and io["protocol"] == "http"  # the test's nginx speaks http
        batch = {"writeKey": KEY, "batch": [{"type": "track", "event": "Opened", "userId": "ann", "messageId": "n1"}]}
        posted = exchange(nginx.port, "POST", "/v1/batch", json.dumps(batch).encode(), {"Content-Type": "text/plain"})
        assert posted.status == 200 and posted.json()["success"] is True
        source = exchange(nginx.port, "GET", f"/sourceConfig/?writeKey={KEY}",
                          headers={"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()})
        assert source.status == 200 and source.json()["source"]["enabled"] is True
        assert exchange(nginx.port, "GET", "/metrics").status == 404
    assert query(database_url, "select id, event from web.tracks") == [("n1", "opened")]


@contextlib.contextmanager
def page_server(html: str):
    """`html` served at http://localhost:<port>/ from a thread: the game's own origin."""
    class Page(BaseHTTPRequestHandler):
        def do_GET(self):
            data = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.browser
def test_a_page_that_loads_the_client_through_nginx_sends_through_nginx(tmp_path, database_url):
    with game_behind_nginx(tmp_path, database_url) as (nginx, port), chromium() as browser:
        base = f"http://127.0.0.1:{nginx.port}"
        html = f"""<!doctype html><meta charset="utf-8"><title>a game</title>
<script src="{base}/attolytics.js" data-app="game" data-key="{KEY}" data-interval="100"></script>
<script>window.accepted = [attolytics.track("clicks", {{client: 7}}), attolytics.track("nope", {{}})];</script>"""
        with page_server(html) as page:
            browser.get(page)
            wait_until(lambda: query(database_url, "select count(*) from clicks")[0][0] >= 1,
                       ARRIVAL_WAIT, "the page's event in the table")
            assert browser.execute_script("return window.accepted") == [True, False]
        posts = [line for line in nginx.logged() if line.method == "POST"]
        assert [(line.uri, line.status) for line in posts] == [("/apps/game/events", 200)]
        assert any(line.method == "OPTIONS" and line.status == 204 for line in nginx.logged())
    [(client, has_id)] = query(database_url, "select client, id is not null from clicks")
    assert (client, has_id) == (7, True)
