"""The one reading of an RFC 3339 moment: exact to the microsecond, rounded past it as PostgreSQL
rounds, in every spelling RFC 3339 allows, and nothing else."""

from datetime import datetime, timedelta, timezone

import pytest

from attolytics.rfc3339 import read_moment

pytestmark = pytest.mark.unit

UTC = timezone.utc


@pytest.mark.parametrize("text, moment", [
    ("2026-12-07T10:00:00Z", datetime(2026, 12, 7, 10, tzinfo=UTC)),
    ("2026-12-07t10:00:00z", datetime(2026, 12, 7, 10, tzinfo=UTC)),
    ("2026-12-07 10:00:00.5+01:00", datetime(2026, 12, 7, 10, 0, 0, 500000, timezone(timedelta(hours=1)))),
    ("2026-12-07T10:00:00.123456Z", datetime(2026, 12, 7, 10, 0, 0, 123456, tzinfo=UTC)),
    ("2026-12-07T10:00:00.0000005Z", datetime(2026, 12, 7, 10, tzinfo=UTC)),  # half to even: down
    ("2026-12-07T10:00:00.0000015Z", datetime(2026, 12, 7, 10, 0, 0, 2, tzinfo=UTC)),  # half to even: up
    ("2026-12-07T10:00:00.9999999Z", datetime(2026, 12, 7, 10, 0, 1, tzinfo=UTC)),
])
def test_moments_read_exactly_or_rounded_as_postgresql_rounds(text, moment):
    assert read_moment(text) == moment
    assert read_moment(text).utcoffset() == moment.utcoffset()


@pytest.mark.parametrize("text", ["2026-12-07", "2026-12-07T10:00:00", "20261207T100000Z", "yesterday",
                                  "2026-12-07T10:00Z", "2026-12-07T10:00:00+0100"])
def test_other_text_is_no_rfc3339_moment(text):
    assert read_moment(text) is None


@pytest.mark.parametrize("text", ["2026-13-07T10:00:00Z", "2026-02-30T10:00:00Z", "0000-01-01T00:00:00Z"])
def test_a_moment_that_is_not_is_an_error(text):
    with pytest.raises(ValueError):
        read_moment(text)
