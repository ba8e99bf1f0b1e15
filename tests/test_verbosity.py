"""What each verbosity shows: -q keeps where to reach the embedded database and drops Twisted's
`Starting factory <... at 0x...>`, which only -v shows."""

import pytest
from twisted.logger import Logger

from attolytics.logs import with_verbosity

pytestmark = pytest.mark.unit

CONNECT = "embedded PostgreSQL is running; connect with: psql '{url}'"


def shown(verbosity: int) -> list[str]:
    """The formats an observer at `verbosity` passes on, of a run's typical info messages."""
    seen = []
    observer = with_verbosity(seen.append, verbosity)
    embedded = Logger(namespace="attolytics.storage.embedded", observer=observer)
    embedded.info(CONNECT, url="postgresql://postgres:@/postgres")
    embedded.info("embedded PostgreSQL stopped")
    Logger(namespace="attolytics.http.site.AttolyticsSite", observer=observer).info(
        "Starting factory {factory!r}", factory=object())
    Logger(namespace="twisted.internet.protocol.Factory", observer=observer).info(
        "Stopping factory {factory!r}", factory=object())
    return [event["log_format"] for event in seen]


def test_quiet_shows_where_to_reach_the_embedded_database_and_no_factory():
    assert shown(-1) == [CONNECT]
    assert shown(-2) == [CONNECT]


def test_default_verbosity_shows_no_factory():
    assert shown(0) == [CONNECT, "embedded PostgreSQL stopped"]


def test_verbose_shows_the_factories_too():
    assert shown(1) == [CONNECT, "embedded PostgreSQL stopped", "Starting factory {factory!r}",
                        "Stopping factory {factory!r}"]
