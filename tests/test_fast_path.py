"""The fast path of the checks (msgspec, http/fast_body.py) against the precise path (the JSON
parser, auth and Table.row), over every column type, with hypothesis, both ways:

- whatever body the fast path accepts, the precise path accepts too, with the same rows, the
  same key and the same count of events;
- whatever events the precise path accepts, the fast path accepts too when they are written
  the way clients write JSON (compact or with spaces, escapes or UTF-8, integers as integers,
  uuids canonical): the fast path is not a narrow special case.
"""

import json
import re
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from attolytics.config import App, PartitionDecl
from attolytics.http.answers import ApiError
from attolytics.http.admission import check_keys
from attolytics.http.fast_body import FastBodies
from attolytics.http.native_body import NativeBodies
from attolytics.http.rows import rows_of
from attolytics.outcomes import Undecided
from attolytics.request_values import APP_ID, RECEIVED_AT
from attolytics.storage.column_types import for_catalog, for_declaration
from attolytics.storage.partitions import AcceptedRange
from attolytics.storage.table import Column, Table
from support.examples import examples

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 30, 12, tzinfo=timezone.utc)

# (name, type, NOT NULL, DEFAULT): every type, each way a column can be filled or left out.
COLUMNS = [
    ("b", "boolean", False, False), ("b2", "boolean", True, True),
    ("i2", "smallint", False, False), ("i4", "integer", True, False), ("i8", "bigint", False, True),
    ("f4", "real", False, False), ("f8", "double precision", False, False),
    ("n", "numeric", False, False), ("n52", "numeric(5,2)", False, False),
    ("t", "text", False, False), ("v5", "varchar(5)", False, False), ("c3", "char(3)", False, True),
    ("u", "uuid", False, False), ("ip", "inet", False, False),
    ("tz", "timestamp with time zone", False, False), ("tn", "timestamp with time zone", True, True),
    ("ts", "timestamp without time zone", False, False),
    ("t0", ("timestamptz", 0), False, False), ("d", "date", False, False),
    ("j", "json", False, False), ("jb", "jsonb", False, False),
]


def column(name: str, type_name, not_null: bool, has_default: bool, **more) -> Column:
    """A column as start-up describes it; a type as the catalog names it (typname, typmod) where
    a configuration cannot name it."""
    column_type = for_catalog(*type_name) if isinstance(type_name, tuple) else for_declaration(type_name)
    return Column(name, column_type.ddl, column_type, not_null, has_default, **more)


class Clock:
    def seconds(self) -> float:
        return NOW.timestamp()


def make_tables() -> dict:
    every = Table("every", [column(*c) for c in COLUMNS])
    filled = Table("filled", [
        column("name", "text", True, False), column("agent", "varchar(8)", False, False, header="User-Agent"),
        column("at", "timestamp with time zone", True, False, source="received_at"),
        column("app", "text", True, False, source="app_id"), column("kind", "text", False, False, source="event_type")])
    clock = Clock()
    partitioned = Table("parted", [column("id", "uuid", False, False), column("ts", "timestamp with time zone",
                                                                            True, False)],
                        key=("id", "ts"),
                        accepted=("ts", AcceptedRange(PartitionDecl("ts", "day", 1, 3), clock, True)))
    return {table.name: table for table in (every, filled, partitioned)}


TABLES = make_tables()
APP = App(app_id="game", secret_keys=(b"s3cret",),
          event_types={"every": "every", "filled": "filled", "parted": "parted", "also": "every"})
REQUEST = {"user-agent": "curl/8", RECEIVED_AT: NOW, APP_ID: "game"}


class Request:
    """What the adapter reads of a request: here, no Authorization header."""

    events_received = 0

    def getHeader(self, name):
        return None


PRECISE = NativeBodies(Clock())  # never given the tables: it reads every body precisely
FAST = NativeBodies(Clock())
FAST.serve(TABLES)


def precise(raw: bytes, event_type_id: str | None):
    """What the precise form makes of a body: ("ok", keys, events, rows by table) or ("refused", why)."""
    try:
        submission = PRECISE.read(Request(), APP, event_type_id, raw)
        check_keys(submission.keys, APP)
        batches = rows_of(submission, TABLES, REQUEST, fast_failed=None)
    except ApiError as e:
        return ("refused", str(e))
    return ("ok", submission.keys, submission.count, {table.name: rows for table, rows in batches})


def fast(raw: bytes, event_type_id: str | None):
    """What the fast form makes of a body, its keys checked as the admission checks them; None
    when it leaves the body to the precise form."""
    try:
        submission = FAST.read(Request(), APP, event_type_id, raw)
    except ApiError:
        return None  # the precise parser read it, and refused it
    if submission.decoded is None:
        return None
    try:
        rows = {table.name: table.decoded_rows(events, REQUEST) for table, events in submission.decoded}
    except Undecided:
        return None
    try:
        check_keys(submission.keys, APP)
    except ApiError as e:
        return ("refused", str(e))
    return ("ok", submission.keys, submission.count, rows)


# --- JSON written by hand: keys may repeat, numbers keep their spelling, strings their escapes.

def number_text(value) -> str:
    return value if isinstance(value, str) else str(value)


def write(value, style) -> str:
    """JSON text of a value: ("obj", [(key, value)]), ("num", text), ("str", text), lists, ..."""
    colon, comma, escape = style
    if isinstance(value, tuple) and value[0] == "obj":
        members = [f"{write_string(key, escape)}{colon}{write(item, style)}" for key, item in value[1]]
        return "{" + comma.join(members) + "}"
    if isinstance(value, tuple) and value[0] == "num":
        return value[1]
    if isinstance(value, list):
        return "[" + comma.join(write(item, style) for item in value) + "]"
    if isinstance(value, str):
        return write_string(value, escape)
    return {None: "null", True: "true", False: "false"}[value]


def write_string(text: str, escape) -> str:
    """A JSON string: UTF-8 (False), escapes past ASCII (True, as Python writes), or "every"
    character escaped (as \\uXXXX, in pairs past the BMP)."""
    if escape != "every":
        return json.dumps(text, ensure_ascii=escape)
    units = text.encode("utf-16-le", "surrogatepass")
    return '"' + "".join(f"\\u{int.from_bytes(units[i:i + 2], 'little'):04x}" for i in range(0, len(units), 2)) + '"'


STYLES = st.tuples(st.sampled_from([":", ": ", " : "]), st.sampled_from([",", ", "]),
                   st.sampled_from([False, True, "every"]))

numbers = st.one_of(
    st.integers().map(lambda n: ("num", str(n))),
    st.integers(-40000, 40000).map(lambda n: ("num", str(n))),
    st.sampled_from(["42.0", "1e2", "-0", "-0.0", "1.5", "1e-400", "1e400", "0.125", "3.14159265358979323846",
                     "1.005", "999.99", "-999.995", "1E+2", "0.1", "1e38", "3.5e38", "253402300799.5",
                     "1554130213", "-62135596800"]).map(lambda t: ("num", t)),
    st.decimals(allow_nan=False, allow_infinity=False).map(lambda d: ("num", str(d) if "E" not in str(d)
                                                                       else f"{d:e}")),
)
strings = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", "abc", "abcdef", "a\x00b", "\ud800", "ab:c", ":x", " :", "é", "😀", "  ",
                     "0190f5a4-0000-7000-8000-000000000001", "0190F5A4-0000-7000-8000-000000000001",
                     "{0190f5a4-0000-7000-8000-000000000001}", "0190f5a400007000800000000000000l",
                     "192.168.0.1", "::1", "10.0.0.0/8", "fe80::1%eth0", "2026-11-30T12:00:00Z",
                     "2026-11-30 12:00:00.1234567+02:00", "2026-11-28T00:00:00z", "2019-04-01T15:09:40+16:00",
                     "2026-02-30", "2026-11-30", "0000-01-01"]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, strings)
documents = st.recursive(
    scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(st.tuples(st.sampled_from(["a", "b", "a b", "\x00"]), inner), max_size=3).map(lambda m: ("obj", m))),
    max_leaves=4)
KEYS = [c[0] for c in COLUMNS] + ["name", "agent", "at", "id", "zzz", "_t"]


@st.composite
def events(draw, type_ids):
    """An event as members, keys drawn from the columns (sometimes twice) and a few others."""
    type_id = draw(st.sampled_from(type_ids))
    keys = draw(st.lists(st.sampled_from(KEYS[:-1]), max_size=5))
    members = [(key, draw(documents)) for key in keys]
    if type_id is not None and draw(st.integers(0, 9)):
        members.insert(draw(st.integers(0, len(members))), ("_t", type_id))
    return ("obj", members)


@st.composite
def bodies(draw, route):
    type_ids = [None] if route is not None else list(APP.event_types) + ["nope"]
    members = [("events", draw(st.lists(events(type_ids), max_size=3)))]
    if draw(st.integers(0, 9)):
        members.insert(draw(st.integers(0, 1)), ("secret_key", draw(st.sampled_from(["s3cret", "wrong", None, ""]))))
    if not draw(st.integers(0, 19)):
        members.append(draw(st.sampled_from([("events", []), ("secret_key", "s3cret"), ("extra", 1)])))
    return write(("obj", members), draw(STYLES)).encode("utf-8", errors="surrogatepass")


ROUTES = ["every", "filled", "parted", None]


@settings(max_examples=examples(1500), suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_what_the_fast_path_accepts_the_precise_path_accepts_alike(data):
    route = data.draw(st.sampled_from(ROUTES))
    raw = data.draw(bodies(route))
    found = fast(raw, route)
    if found is not None:
        assert precise(raw, route) == found, raw


# --- Events the precise path accepts, written as clients write them.

def valid_values():
    """Per column, values its converter accepts (strings with quotes, backslashes and controls)."""
    plain = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x00"), max_size=6)
    uuid = st.uuids().map(str)
    moment = st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30), timezones=st.just(timezone.utc)).map(
        lambda m: m.isoformat().replace("+00:00", "Z"))
    return {
        "boolean": st.booleans(), "smallint": st.integers(-32768, 32767).map(lambda n: ("num", str(n))),
        "integer": st.integers(-2**31, 2**31 - 1).map(lambda n: ("num", str(n))),
        "bigint": st.integers(-2**63, 2**63 - 1).map(lambda n: ("num", str(n))),
        "real": st.floats(-1e30, 1e30).filter(lambda f: f == 0 or abs(f) > 1e-30).map(lambda f: ("num", repr(f))),
        "double precision": st.floats(allow_nan=False, allow_infinity=False).map(lambda f: ("num", repr(f))),
        "numeric": st.decimals(-10**6, 10**6, places=4).map(lambda d: ("num", str(d))),
        "numeric(5,2)": st.decimals(-999, 999, places=2).map(lambda d: ("num", str(d))),
        "text": plain, "varchar(5)": plain.map(lambda s: s[:5]), "char(3)": plain.map(lambda s: s[:3]),
        "uuid": uuid, "inet": st.ip_addresses().map(str),
        "timestamp with time zone": moment, "timestamp without time zone": moment,
        ("timestamptz", 0): moment.map(lambda m: m.split(".")[0].rstrip("Z") + "Z"),
        "date": st.dates(datetime(1, 1, 1).date()).map(lambda d: d.isoformat()),
        "json": documents.filter(lambda v: v is not None),
        "jsonb": st.dictionaries(st.sampled_from("abc"), st.integers().map(lambda n: ("num", str(n))), max_size=3).map(
            lambda d: ("obj", list(d.items()))),
    }


VALID = valid_values()


@st.composite
def good_every(draw):
    members = []
    for name, type_name, not_null, has_default in COLUMNS:
        if not_null and not has_default or draw(st.booleans()):
            value = draw(VALID[type_name]) if not_null or draw(st.integers(0, 4)) else None
            members.append((name, value))
    return ("obj", draw(st.permutations(members)))


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(good_every(), max_size=5), style=STYLES.map(lambda s: (s[0].lstrip(), s[1], s[2])))
@example(events=[("obj", [("i4", ("num", "7")), ("t", ":colon first")])], style=(":", ",", False))
@example(events=[("obj", [("i4", ("num", "7")), ("t", 'say "hi":')])], style=(":", ",", False))
@example(events=[("obj", [("i4", ("num", "7")), ("t", "é\\\n\t😀"), ("v5", "\u2028\"")])], style=(":", ",", True))
def test_events_the_precise_path_accepts_take_the_fast_path_when_written_plainly(events, style):
    raw = write(("obj", [("secret_key", "s3cret"), ("events", events)]), style).encode("utf-8", "surrogatepass")
    expected = precise(raw, "every")
    # Left to the precise path by design: a value the column refuses after all (a repeated key
    # in a json value, say), a NUL in a json value, a string that holds what looks like the end
    # of a key.
    if expected[0] != "ok" or b"\\u0000" in raw or looks_like_a_key_end(events):
        return
    assert fast(raw, "every") == expected, raw


_LIKE_A_KEY_END = re.compile('(?:^|") *:')  # in JSON text, a quote and spaces before a colon


def looks_like_a_key_end(value) -> bool:
    """Whether a string within the value begins with a colon (after spaces or not), or holds a
    quote so followed, which in JSON text looks like the end of a key."""
    if isinstance(value, str):
        return _LIKE_A_KEY_END.search(value) is not None
    if isinstance(value, tuple) and value[0] == "obj":
        return any(looks_like_a_key_end(key) or looks_like_a_key_end(item) for key, item in value[1])
    if isinstance(value, list):
        return any(looks_like_a_key_end(item) for item in value)
    return False


@settings(max_examples=examples(200))
@given(st.lists(st.tuples(st.sampled_from(["every", "also", "filled", "parted"]), st.integers(0, 10)), max_size=6))
def test_the_t_route_groups_rows_by_table_in_first_seen_order(picks):
    events = []
    for type_id, number in picks:
        if type_id in ("every", "also"):
            events.append(("obj", [("_t", type_id), ("i4", ("num", str(number)))]))
        elif type_id == "filled":
            events.append(("obj", [("_t", type_id), ("name", f"n{number}")]))
        else:
            events.append(("obj", [("_t", type_id), ("ts", "2026-11-30T10:00:00Z"),
                                   ("id", f"0190f5a4-0000-7000-8000-0000000000{number:02d}")]))
    raw = write(("obj", [("secret_key", "s3cret"), ("events", events)]), (":", ",", False)).encode()
    expected = precise(raw, None)
    assert expected[0] == "ok"
    assert fast(raw, None) == expected


def test_the_fast_path_leaves_what_it_cannot_tell_to_the_precise_path():
    def body(event: str, key: str = '"secret_key":"s3cret",') -> bytes:
        return ('{' + key + '"events":[' + event + ']}').encode()
    cases = {
        "a repeated key": body('{"i4":1,"i4":2}'),
        "a NUL": body('{"i4":1,"t":"a\\u0000"}'),
        "a NUL in a json value": body('{"i4":1,"j":"a\\u0000"}'),
        "an unpaired surrogate": body('{"i4":1,"t":"a\\ud800"}'),
        "surrogates in the wrong order": body('{"i4":1,"t":"\\ude00\\ud83d"}'),
        "a high surrogate before a letter": body('{"i4":1,"t":"\\ud83d\\u0041"}'),
        "two high surrogates": body('{"i4":1,"t":"\\ud83d\\ud83d\\ude00"}'),
        "a high surrogate before a character": body('{"i4":1,"t":"\\ud83dx"}'),
        "a high surrogate at the end": body('{"i4":1,"t":"\\ud83d"}'),
        "a json value nested 500 deep": body('{"i4":1,"j":' + "[" * 500 + "]" * 500 + '}'),
        "a json value nested 5000 deep": body('{"i4":1,"j":' + "[" * 5000 + "]" * 5000 + '}'),
        "an escaped quote before a colon": body('{"i4":1,"t":"a\\":"}'),
        "an escaped repeated key": body('{"i4":1,"\\u0069\\u0034":2}'),
        "42.0 for an integer": body('{"i4":42.0}'),
        "a non-canonical uuid": body('{"i4":1,"u":"0190F5A4-0000-7000-8000-000000000001"}'),
        "a missing required column": body('{"b":true}'),
        "an unknown key": body('{"i4":1,"zzz":1}'),
        "a repeated key in a json value": body('{"i4":1,"j":{"a":1,"a":2}}'),
        "a repeated top-level key": body('{"i4":1}', '"secret_key":"s3cret","secret_key":"s3cret",'),
        "a string longer than varchar(5)": body('{"i4":1,"v5":"abcdef"}'),
        "a byte-order mark": b"\xef\xbb\xbf" + body('{"i4":1}'),
        "a value the converter refuses": body('{"i4":1,"d":"2026-02-30"}'),
        "null for a NOT NULL column the converter checks": body('{"i4":1,"tn":null}'),
    }
    for why, raw in cases.items():
        assert fast(raw, "every") is None, why
    assert precise(cases["a json value nested 500 deep"], "every")[0] == "ok"  # stored, as before
    assert fast(body('{"i4":1,"t":":x"}'), "every") is None  # a value that looks like a key end
    for escaped in ('{"i4":1,"t":"caf\\u00e9 \\ud83d\\ude00 \\"q\\" \\\\ \\/ \\n"}',
                    '{"i4":1,"t":"\\u00E9","j":{"\\u00e9":"\\t"},"jb":["\\ud83d\\ude00"]}'):
        found = fast(body(escaped), "every")
        assert found is not None and found[0] == "ok" and found == precise(body(escaped), "every"), escaped
    assert fast(body('{"i4": 1, "t" : "x"}'), "every") == precise(body('{"i4": 1, "t" : "x"}'), "every")
    assert fast(body('{"ts":"2026-11-30T10:00:00Z"}'), "parted")[0] == "ok"
    assert fast(body('{"ts":"2026-11-20T10:00:00Z"}'), "parted") is None  # outside the range kept
    assert fast(body('{"ts":null}'), "parted") is None
    assert fast(body('{"_t":"every","i4":1}'), None) == precise(body('{"_t":"every","i4":1}'), None)
    assert fast(body('{"i4":1}'), None) is None  # the _t route without _t
    assert fast(body('{"i4":1}', '"secret_key":"wrong",'), "every") == precise(
        body('{"i4":1}', '"secret_key":"wrong",'), "every") == ("refused", "wrong secret_key")


@pytest.mark.parametrize("odd", ['a"b', "a\\b", "tab\there"])
def test_a_table_with_a_column_msgspec_cannot_name_takes_the_precise_path(odd):
    """msgspec refuses such a field name: the fast path leaves every event of that table (with
    or without an escape in its body, on either route) to the precise path, which takes it."""
    odd_table = Table("odd", [column("n", "integer", False, False), column(odd, "text", False, False)])
    app = App(app_id="odd", secret_keys=(b"s3cret",), event_types={"odd": "odd"})
    bodies = FastBodies({"odd": odd_table})
    for raw, route in ((b'{"secret_key":"s3cret","events":[{"n":1}]}', "odd"),
                       (b'{"secret_key":"s3cret","events":[{"_t":"odd","n":1}]}', None),
                       (b'{"secret_key":"s3cret","events":[{"n":1,' + json.dumps(odd).encode() + b':"x"}]}', "odd")):
        assert bodies.decode(raw, app, route) is None, raw
        event = json.loads(raw)["events"][0]
        assert odd_table.row(event, 0, REQUEST, ignore="_t" if route is None else None) is not None
