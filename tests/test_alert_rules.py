"""The Prometheus alerting rules in contrib/prometheus: promtool checks them and runs their unit
tests, and every metric they read is one the service exports."""

import re
import subprocess

import pytest

from attolytics.metrics import Metrics
from support.programs import required_program
from support.twistd import REPO

pytestmark = pytest.mark.unit

RULES = REPO / "contrib" / "prometheus"
INSTALL = "apt-get install prometheus (Debian's, which brings promtool)"
# The series names each kind of metric family exports.
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def promtool(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([required_program("promtool", INSTALL), *arguments], cwd=RULES,
                          capture_output=True, text=True, timeout=60)


def test_promtool_finds_the_rules_sound():
    checked = promtool("check", "rules", "attolytics-alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout


def test_the_rules_pass_their_unit_tests():
    tested = promtool("test", "rules", "attolytics-alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_metric_the_rules_read_is_exported():
    exported = {"up"}  # Prometheus' own, for the instance down
    for family in Metrics().registry.collect():
        exported.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    read = set(re.findall(r"\b(attolytics_\w+|up)\{", (RULES / "attolytics-alerts.yml").read_text()))
    read |= set(re.findall(r"\b(attolytics_\w+)\b", (RULES / "attolytics-alerts.yml").read_text()))
    assert len(read) > 8
    assert read - exported == set()
