"""The Grafana dashboard in contrib/grafana against a real Prometheus (Debian's) scraping the real
service under a little load: every panel's query returns data."""

import json
import re
import subprocess
import urllib.parse
import urllib.request

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from support.configs import SECRET
from support.http import free_port
from support.programs import required_program
from support.twistd import REPO
from support.waiting import wait_for

pytestmark = pytest.mark.service

DASHBOARD = REPO / "contrib" / "grafana" / "attolytics-dashboard.json"
# What Grafana puts for $__rate_interval: four scrape intervals at least; here, scraped each second.
RATE_INTERVAL = "15s"
CONFIG = f"""
admin_listen: 'tcp:0:interface=127.0.0.1'
tables:
  clicks:
    partition: {{column: at, interval: day, ahead: 1, keep: 7}}
    columns:
      - {{name: at, type: timestamptz, source: received_at}}
      - {{name: button, type: text, required: true}}
apps:
  shop:
    secret_key: {SECRET}
    tables: [clicks]
"""


def panel_queries(job: str = "attolytics") -> list[tuple[str, str]]:
    """(panel title, query) of every target of every panel, as Grafana would send it with `job`
    chosen in its Job drop-down."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(panel["title"], target["expr"].replace("$__rate_interval", RATE_INTERVAL).replace("$job", job))
            for panel in panels for target in panel["targets"]]


def job_choices(port: int) -> list[str]:
    """What the dashboard's Job drop-down offers: its label_values() query, as Grafana asks it."""
    [variable] = [v for v in json.loads(DASHBOARD.read_text())["templating"]["list"] if v["name"] == "job"]
    metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["definition"]).groups()
    url = f"http://127.0.0.1:{port}/api/v1/label/{label}/values?" + urllib.parse.urlencode({"match[]": metric})
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())["data"]


def query(port: int, expression: str) -> list:
    """The result of an instant query of Prometheus' HTTP API."""
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    with urllib.request.urlopen(url, timeout=10) as answer:
        body = json.loads(answer.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.fixture
def prometheus(tmp_path):
    """start(target_port) runs Prometheus scraping the service's /metrics each second; its port."""
    program = required_program("prometheus", "apt-get install prometheus (Debian's)")
    running = []

    def start(target: int) -> int:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: attolytics
    static_configs: [{{targets: ["127.0.0.1:{target}"]}}]
""")
        running.append(subprocess.Popen(
            [program, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return port

    yield start
    for process in running:
        process.terminate()
        process.wait(timeout=30)


def test_the_dashboard_has_a_panel_for_each_thing_an_operator_watches():
    titles = " | ".join(title for title, _ in panel_queries()).lower()
    for subject in ("stored", "refused", "status", "p99", "queue", "database", "partitions", "reloads"):
        assert subject in titles, subject


@pytest_twisted.ensureDeferred
async def test_every_panel_returns_data_from_a_real_prometheus(start, prometheus, tmp_path):
    path = tmp_path / "app.yaml"
    running = await start(CONFIG, path=path)
    assert running.fatal == []
    assert await running.service.reload() is True  # a reload for the reloads panel
    # Scraped on the admin port, as an operator would set it up; the public port refuses /metrics.
    assert (await running.client.request("GET", "/metrics")).status == 404
    port = prometheus(running.admin_port)

    async def load() -> None:
        """Events stored and refused, as a shop's pages would send them."""
        good = await running.client.post_events("shop", "clicks", [{"button": "buy"}] * 5)
        assert good.status == 200
        bad = await running.client.post_events("shop", "clicks", [{"button": "buy"}, {"colour": "red"}])
        assert bad.status == 400

    async def scraped_long_enough() -> bool:
        await load()
        try:
            samples = await deferToThread(query, port, "count_over_time(up[1m])")
        except OSError:  # Prometheus is still starting
            return False
        return bool(samples) and float(samples[0]["value"][1]) >= 8

    await wait_for(scraped_long_enough, seconds=60, what="Prometheus to scrape the service a few times")
    assert await deferToThread(job_choices, port) == ["attolytics"]
    empty = [title + ": " + expression for title, expression in panel_queries()
             if not await deferToThread(query, port, expression)]
    assert empty == []
    # The Job filter is real: a job Prometheus does not scrape shows nothing in any panel.
    shown = [title for title, expression in panel_queries(job="another-deployment")
             if await deferToThread(query, port, expression)]
    assert shown == []
