"""tcp_endpoint: the endpoint description that --host and --port stand for."""

import pytest

from attolytics.tap import tcp_endpoint

pytestmark = pytest.mark.unit


def test_tcp_endpoint_for_localhost():
    assert tcp_endpoint("localhost", 8000) == "tcp:8000:interface=127.0.0.1"


def test_tcp_endpoint_keeps_other_ipv4_addresses():
    assert tcp_endpoint("0.0.0.0", 80) == "tcp:80:interface=0.0.0.0"


def test_tcp_endpoint_escapes_ipv6_colons():
    assert tcp_endpoint("::1", 8000) == "tcp:8000:interface=\\:\\:1"
    assert tcp_endpoint("fe80::1", 9) == "tcp:9:interface=fe80\\:\\:1"
