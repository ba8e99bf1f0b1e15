"""How a worker's output reaches its parent's log: flushed once per turn of its reactor, passed on
by the parent whole whatever pieces the pipe gives, a line cut short by the worker's end closed,
its standard error logged as events."""

import pytest
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from attolytics.logs import with_verbosity
from attolytics.supervisor import _Worker
from attolytics.tap import _lines_to
from attolytics.worker import _FlushedOncePerTurn

pytestmark = pytest.mark.unit


class _Processes:
    """What a worker's protocol sees of WorkerProcesses."""

    def __init__(self):
        self.reactor = Clock()
        self.written: list[str] = []
        self.ended = []

    def log_lines(self, text: str) -> None:
        self.written.append(text)

    def worker_ended(self, worker, reason) -> None:
        self.ended.append(worker)


def test_log_lines_are_passed_on_whole():
    processes = _Processes()
    worker = _Worker(processes, 1)
    worker.childDataReceived(1, b"2026-12-07 [a#info worker 1] first line, in ")
    assert processes.written == []
    worker.childDataReceived(1, b"two pieces\n2026-12-07 [a#info worker 1] second\n2026-12-07 [a#info wor")
    assert processes.written == ["2026-12-07 [a#info worker 1] first line, in two pieces\n"
                                 "2026-12-07 [a#info worker 1] second\n"]
    worker.processEnded(Failure(Exception("ended")))
    assert processes.written[1:] == ["2026-12-07 [a#info wor\n"]
    assert processes.ended == [worker]


def test_standard_error_is_logged_as_events_of_the_parent():
    processes = _Processes()
    worker = _Worker(processes, 2)
    worker.pid = 4242
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        worker.childDataReceived(2, b"Traceback (most recent call last):\n  File")
        worker.childDataReceived(2, b' "x.py", line 1\n')
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert processes.written == []
    logged = [(e["log_level"].name, e["log_format"].format(**e)) for e in events
              if e.get("log_namespace") == "attolytics.supervisor"]
    assert logged == [("error", "worker 2 (pid 4242): Traceback (most recent call last):"),
                      ("error", 'worker 2 (pid 4242):   File "x.py", line 1')]


class _Out:
    def __init__(self):
        self.buffered, self.flushed = "", []

    def write(self, text: str) -> None:
        self.buffered += text

    def flush(self) -> None:
        self.flushed.append(self.buffered)
        self.buffered = ""


def test_a_worker_flushes_its_log_lines_once_per_turn_of_the_reactor():
    clock, out = Clock(), _Out()
    flushed_once = _FlushedOncePerTurn(clock, out)
    for line in ("first\n", "second\n"):
        flushed_once.write(line)
        flushed_once.flush()  # as the log observer does after each line
    assert out.flushed == []
    clock.advance(0)
    assert out.flushed == ["first\nsecond\n"]
    flushed_once.write("third\n")
    flushed_once.flush()
    clock.advance(0)
    assert out.flushed == ["first\nsecond\n", "third\n"]


def test_under_syslog_each_worker_line_is_an_event_of_the_parent():
    events = []
    quiet = with_verbosity(events.append, -1)  # what the worker wrote, it kept to -q already
    _lines_to(None, quiet)("[a#warn worker 1] first\n[a#error worker 1] second\n")
    assert [formatEvent(event) for event in events] == ["[a#warn worker 1] first", "[a#error worker 1] second"]
