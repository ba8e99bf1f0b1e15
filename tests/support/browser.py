"""For tests in headless Chromium: a driver with the preferences a test needs (missing Chromium
fails the test under CI and skips it elsewhere), pages served from an origin of their own (with a client of
the game app, say), the JavaScript SDKs of tests/js served from that origin too, what the page wrote
to its console, the service's access lines as it logs them, and the rows as they arrive."""

import os
import shutil
import tempfile
import time
from contextlib import contextmanager

import pytest
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data, File

from support.configs import SECRET
from support.programs import required_program
from support.twistd import REPO

INSTALL = "apt-get install chromium chromium-driver (Debian's Chromium and ChromeDriver)"
# The SDKs that tests/js/package.json pins, as npm installs them.
JS_MODULES = REPO / "tests" / "js" / "node_modules"
NPM_INSTALL = "npm ci --prefix tests/js (the SDKs pinned in tests/js/package.json and its lock file)"
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-dev-shm-usage")


@contextmanager
def chromium(arguments=(), prefs=None):
    """A selenium driver of a headless Chromium with a fresh profile, started with these extra
    command-line `arguments` and profile preferences `prefs` (such as enable_do_not_track)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or required_program("chromium", INSTALL)
    driver_path = required_program("chromedriver", INSTALL)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    profile = tempfile.mkdtemp(prefix="attolytics-chromium-")
    for flag in (*_FLAGS, f"--user-data-dir={profile}", *arguments):
        options.add_argument(flag)
    if prefs:
        options.add_experimental_option("prefs", prefs)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console, for driver.get_log
    try:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
        try:
            yield driver
        finally:
            driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def in_browser(function, *args):
    """A blocking selenium call, run in a thread so that the reactor goes on serving meanwhile."""
    return deferToThread(function, *args)


class Pages:
    """HTML pages served from http://localhost:<a port of their own>: an origin other than the service's."""

    def __init__(self):
        self.root = Resource()
        self.port = reactor.listenTCP(0, Site(self.root), interface="127.0.0.1")

    @property
    def origin(self) -> str:
        """The origin of the pages, as the browser names it in an Origin header."""
        return f"http://localhost:{self.port.getHost().port}"

    def add(self, name: str, html: str) -> str:
        """Serve `html` at /<name>; its URL."""
        self.root.putChild(name.encode(), Data(html.encode(), "text/html; charset=utf-8"))
        return f"{self.origin}/{name}"

    def add_sdks(self, name: str = "js") -> str:
        """Serve tests/js/node_modules at /<name>/ (missing: fails the test under CI, skipped
        elsewhere); the URL its files are under, without a trailing slash."""
        if not JS_MODULES.is_dir():
            message = f"this test needs the JavaScript SDKs: {NPM_INSTALL}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        self.root.putChild(name.encode(), File(str(JS_MODULES), defaultType="application/octet-stream"))
        return f"{self.origin}/{name}"

    def stop(self):
        """Stop serving: a Deferred."""
        return self.port.stopListening()


def console_lines(driver) -> list[str]:
    """What the page wrote to its console (and the browser's own errors, CORS refusals among
    them) since the last call, one line an entry; a blocking selenium call like the others."""
    return [f"{entry['level']} {entry['message']}" for entry in driver.get_log("browser")]


class AccessLog:
    """The access lines the service logs while it is open (one per answered request), as dicts
    with the time it was logged (Unix seconds), method, route, path (the route's label when the
    path holds a key), status and events."""

    def __init__(self):
        self.lines: list[dict] = []

    def _observe(self, event) -> None:
        if event.get("log_namespace") == "attolytics.site" and "route" in event:
            self.lines.append({
                "time": event.get("log_time", time.time()), "method": event["method"],
                "route": event["route"], "path": event.get("path"), "status": event["status"],
                "events": event["events"],
            })

    def posts(self, route: str) -> list[dict]:
        """The lines of POSTs to `route`, in the order they were answered."""
        return [line for line in self.lines if line["method"] == "POST" and line["route"] == route]

    def __enter__(self):
        globalLogPublisher.addObserver(self._observe)
        return self

    def __exit__(self, *exc_info):
        globalLogPublisher.removeObserver(self._observe)


def game_events_stored(sql, count: int):
    """A condition for wait_for: the game_events table holds at least `count` rows."""
    async def condition():
        """the rows arrive in PostgreSQL"""
        return sql("select count(*) from game_events")[0][0] >= count
    return condition


def page_with_client(service: str, script: str, interval: int = 100) -> str:
    """A page with a client of its own, whose onError collects what it reports in window.errors."""
    return f"""<!doctype html><meta charset="utf-8"><title>a page</title>
<script src="{service}/attolytics.js"></script>
<script>
  window.errors = [];
  var client = attolytics.client({{app: "mygame", key: "{SECRET}", interval: {interval},
    onError: function (e) {{ errors.push({{message: e.message, status: e.status, events: e.events}}); }}}});
  {script}
</script>"""
