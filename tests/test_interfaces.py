"""The shapes both sides name (attolytics/interfaces.py) hold for what really implements them and
for every fake the tests use in their place: each member of a protocol is there, and a method
takes the same parameters, as treq checks its StubTreq against its own API."""

import inspect

import pytest
from twisted.internet.task import Clock

from attolytics.config import parse_config
from attolytics.interfaces import ConnectionPool, EventTable, RowWriter, TableRows
from attolytics.storage.pool import ConnectionPool as Pool
from attolytics.storage.table import Table
from attolytics.storage.writer import Writer
from support.configs import GAME_CONFIG
from support.memory import FakeWriter, declared_tables

pytestmark = pytest.mark.unit


def members(protocol) -> dict[str, object]:
    """A protocol's public members: its methods and properties by name, and None for an attribute."""
    found = {name: None for name in protocol.__annotations__}
    found.update({name: value for name, value in vars(protocol).items()
                  if not name.startswith("_") and (callable(value) or isinstance(value, property))})
    return found


def parameters(function) -> list[tuple[str, object, bool]]:
    """(name, kind, whether it has a default) of each parameter but self."""
    return [(p.name, p.kind, p.default is not p.empty)
            for p in inspect.signature(function).parameters.values() if p.name != "self"]


def differences(implementation, protocol) -> list[str]:
    """What `implementation` (an instance) lacks of `protocol`, or takes otherwise."""
    found = []
    for name, member in members(protocol).items():
        if name not in dir(implementation):
            found.append(f"{type(implementation).__name__} has no {name}")
        elif callable(member) and not isinstance(member, property):
            mine = getattr(type(implementation), name)
            if parameters(mine) != parameters(member):
                found.append(f"{type(implementation).__name__}.{name}{inspect.signature(mine)} is not "
                             f"{protocol.__name__}.{name}{inspect.signature(member)}")
    return found


def a_table() -> Table:
    return next(iter(declared_tables(parse_config(GAME_CONFIG, "test.conf.yaml")).values()))


IMPLEMENTATIONS = {
    "Table": (a_table, EventTable),
    "Writer": (lambda: Writer(None, Clock()), RowWriter),
    "FakeWriter (tests/support/memory.py)": (FakeWriter, RowWriter),
    "ConnectionPool": (lambda: Pool("postgresql:///none", Clock()), ConnectionPool),
}


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_each_implementation_and_fake_has_its_protocol_whole(name):
    make, protocol = IMPLEMENTATIONS[name]
    assert differences(make(), protocol) == []


def test_a_missing_member_or_another_signature_is_found():
    class Partial:
        connected = True
        queued_rows = 0

        def insert(self, rows, size=0):
            pass

    assert differences(Partial(), RowWriter) == [
        "Partial.insert(self, rows, size=0) is not RowWriter.insert(self, batches: "
        "list[attolytics.interfaces.TableRows], size: int = 0) -> twisted.internet.defer.Deferred",
        "Partial has no drain"]


def test_rows_for_the_writer_are_named_and_still_unpack_as_a_pair():
    table = a_table()
    batch = TableRows(table, [("row",)])
    name, rows = batch
    assert (batch.table, batch.rows) == (name, rows) == (table, [("row",)])
