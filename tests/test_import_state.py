"""No hidden process-wide state: importing Attolytics' modules changes nothing in the process
(prometheus_client's switches, twisted's log observers, the environment, signal handlers); the
verbosity and the metrics registry belong to what the process builds where it starts."""

import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry
from twisted.logger import LogLevel

from attolytics.logs import with_verbosity
from attolytics.metrics import Metrics

pytestmark = pytest.mark.unit

# (Which reactor is installed is not checked: importing klein installs the default one.)
STATE = """
import os, signal, sys
import prometheus_client.metrics, prometheus_client.registry
from twisted.logger import globalLogBeginner, globalLogPublisher

def state():
    return (prometheus_client.metrics._use_created, list(prometheus_client.registry.REGISTRY._names_to_collectors),
            list(globalLogPublisher._observers), globalLogBeginner._temporaryObserver is not None,
            dict(os.environ), {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)})

before = state()
import attolytics.logs, attolytics.metrics, attolytics.systemd, attolytics.service, attolytics.tap
import attolytics.supervisor, attolytics.worker, attolytics.signals, attolytics.reload
after = state()
assert before == after, (before, after)
"""


def test_importing_the_modules_changes_no_process_wide_state():
    result = subprocess.run([sys.executable, "-c", STATE], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_metrics_live_in_the_registry_handed_in_and_show_no_created_series():
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.events_inserted.labels("game", "scores").inc(2)
    assert registry.get_sample_value("attolytics_events_inserted_total", {"app": "game", "table": "scores"}) == 2
    rendered = metrics.render().decode()
    assert 'attolytics_events_inserted_total{app="game",table="scores"} 2.0' in rendered
    assert "_created" not in rendered


def test_the_verbosity_is_the_observers_and_applies_to_attolytics_messages_only():
    seen = []
    quiet = with_verbosity(seen.append, -1)
    for namespace, level in [("attolytics.site", LogLevel.info), ("attolytics.reload", LogLevel.warn),
                             ("twisted.web", LogLevel.info), ("attolytics.writer", LogLevel.debug)]:
        quiet({"log_namespace": namespace, "log_level": level, "log_format": ""})
    assert [(e["log_namespace"], e["log_level"]) for e in seen] == [("attolytics.reload", LogLevel.warn),
                                                                   ("twisted.web", LogLevel.info)]
    seen.clear()
    verbose = with_verbosity(seen.append, 2)
    verbose({"log_namespace": "attolytics.writer", "log_level": LogLevel.debug, "log_format": ""})
    assert len(seen) == 1
