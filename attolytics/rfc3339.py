"""RFC 3339 date-times with a time zone, read to the microsecond as PostgreSQL reads them: the one
reading of a moment's text, for the timestamp columns and for Segment's message times."""

import re
from datetime import datetime, timedelta
from decimal import Decimal

_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)

# The lower-case letters RFC 3339 allows, which datetime does not read.
_LOWER = re.compile(r"[tz]")


def read_moment(text: str) -> datetime | None:
    """The moment `text` names, fractions past the microsecond rounded half to even as PostgreSQL
    rounds them; None when it is not RFC 3339 with a time zone; ValueError or OverflowError when
    it is, but names no moment (a 13th month, the year 0000)."""
    match = _RFC3339.fullmatch(text)
    if not match:
        return None
    whole, fraction, zone = match.groups()
    if fraction is None or len(fraction) <= 6:  # datetime reads it exactly, and every spelling
        return datetime.fromisoformat(text if text.isupper() or not _LOWER.search(text) else text.upper())
    moment = datetime.fromisoformat(whole.upper() + zone.upper())
    micros = int((Decimal("0." + fraction) * 1_000_000).to_integral_value())
    return moment + timedelta(microseconds=micros)
