"""SIGHUP to the installed twistd under load: the rewritten configuration (a new app, a rotated
key, a new event type with its table, a new column) applies within seconds while every request
gets 200; a broken one is refused and the service goes on as before."""

import signal
import threading
import time

import pytest

from support.configs import SECRET, scores_app
from support.http import exchange, free_port, post
from support.postgres import query
from support.twistd import listen_on, notify_receiver, serve, wait_for_notification, wait_until_served
from support.waiting import wait_until

pytestmark = pytest.mark.twistd

NEW_KEY = "the-rotated-in-key"


def config(port: int, database_url: str, keys=(SECRET,), tables=("scores",), level=False, shop=False) -> str:
    return scores_app(keys, tables, columns=["{name: level, type: i32}"] if level else (),
                      apps="  shop:\n    secret_key: shop-key\n    tables: [clicks]\n" if shop else "",
                      extra=f"listen: {listen_on(port)}\ndatabase_url: '{database_url}'\n")


class Load(threading.Thread):
    """Posts one event after another with the first key; records every answer's status."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.statuses: list[int] = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                status, _ = post(self.port, "/apps/game/events/scores",
                                 {"secret_key": SECRET, "events": [{"player": "load"}]})
            except OSError as e:
                status = repr(e)
            self.statuses.append(status)


def works(port, path, key, events) -> bool:
    status, _ = post(port, path, {"secret_key": key, "events": events})
    return status == 200


def test_sighup_under_load_applies_the_new_file_and_refuses_a_broken_one(tmp_path, database_url):
    port = free_port()
    (tmp_path / "app.yaml").write_text(config(port, database_url))
    address = str(tmp_path / "notify.sock")
    load = Load(port)
    with notify_receiver(address) as receiver, serve(tmp_path, "-c", "app.yaml",
                                                      env={"NOTIFY_SOCKET": address}) as run:
        wait_until_served(port, run, path="/apps/game/events/scores", key=SECRET)
        wait_for_notification(receiver, "READY=1")
        load.start()
        wait_until(lambda: len(load.statuses) > 20, what="load under way")
        other_port = free_port()
        (tmp_path / "app.yaml").write_text(config(other_port, "postgresql://nobody@/nowhere",
                                                  keys=(SECRET, NEW_KEY), tables=("scores", "clicks"),
                                                  level=True, shop=True))
        run.process.send_signal(signal.SIGHUP)
        began = time.monotonic()
        assert wait_for_notification(receiver, "READY=1") == ["RELOADING=1", "READY=1"]
        wait_until(lambda: works(port, "/apps/game/events/scores", NEW_KEY, [{"player": "new", "level": 7}])
                   and works(port, "/apps/game/events/clicks", SECRET, [{"button": "buy"}])
                   and works(port, "/apps/shop/events/clicks", "shop-key", [{"button": "sell"}]),
                   seconds=5, what="the new key, table, column and app working")
        applied_after = time.monotonic() - began
        # The listen address and the database only change with a restart: still here, still there.
        assert exchange(port, "GET", "/healthz").status == 200
        broken_at = len(load.statuses)
        (tmp_path / "app.yaml").write_text("apps: [\n")
        run.process.send_signal(signal.SIGHUP)
        assert wait_for_notification(receiver, "READY=1") == ["RELOADING=1", "READY=1"]
        wait_until(lambda: "reload refused" in run.output, what="the refusal logged")
        wait_until(lambda: len(load.statuses) > broken_at + 20, what="load after the broken reload")
        assert works(port, "/apps/game/events/scores", NEW_KEY, [{"player": "still"}])
        load.stop.set()
        load.join(timeout=10)
    output = run.output
    assert run.returncode == 0, output
    assert applied_after < 5
    assert set(load.statuses) == {200}, [s for s in load.statuses if s != 200][:10]
    assert "app.yaml: listen changes only with a restart; it stays as it is" in output
    assert "app.yaml: database changes only with a restart; it stays as it is" in output
    assert "app.yaml: reload refused, the configuration in force stays: app.yaml: YAML syntax error" in output
    assert "Traceback" not in output
    assert query(database_url, "select player, level from scores where player in ('new', 'still') order by player") == [
        ("new", 7), ("still", None)]
    assert query(database_url, "select count(*) from clicks") == [(2,)]
