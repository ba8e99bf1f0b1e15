"""A POST passes each step of the pipeline once, in order: the body as sent, the adapter that
reads it (the C decoder or the strict parser inside), the admission, the rows, the writer. The
steps are told apart by the modules entered while one request is answered in memory."""

import json
import sys
from pathlib import Path

import pytest

import attolytics
from support.configs import GAME_CONFIG, SECRET, START
from support.memory import FakeWriter, InMemoryService

pytestmark = pytest.mark.unit

HTTP = Path(attolytics.__file__).parent / "http"
# Each step, by the modules that are its own. The tables' code (storage/) serves two steps (the
# C decoder reads events in a table's shape; the rows are the table's), so it is no step itself.
STEPS = {
    "body.py": "body",
    "native_body.py": "adapter", "fast_body.py": "adapter", "strict_json.py": "adapter",
    "admission.py": "admission", "rate_limits.py": "admission", "client_address.py": "admission",
    "rows.py": "rows",
}
WRITER = FakeWriter.insert.__code__


def steps_of(raw: bytes) -> tuple[int, list[str]]:
    """The answer's status, and the steps entered while one POST of `raw` was answered, each
    entry once (calls within the step it is in are not counted again)."""
    service = InMemoryService(GAME_CONFIG.replace("app_id: mygame", "app_id: mygame\n    rate_limit: "
                                                  "{events_per_second: 100, burst: 100}"))
    entered = []

    def profile(frame, event, arg):
        if event != "call":
            return
        path = Path(frame.f_code.co_filename)
        step = STEPS.get(path.name) if path.parent == HTTP else ("writer" if frame.f_code is WRITER else None)
        if step is not None and (not entered or entered[-1] != step):
            entered.append(step)

    sys.setprofile(profile)
    try:
        answer = service.request("POST", "/apps/mygame/events/game_events", raw, {"Content-Type": "application/json"})
    finally:
        sys.setprofile(None)
    return answer.status, entered


@pytest.mark.parametrize("events", [[START], [{**START, "score": 42.0}]],
                         ids=["read by the C decoder", "read by the strict parser (42.0 for an integer)"])
def test_a_post_passes_each_step_once_in_order(events):
    raw = json.dumps({"secret_key": SECRET, "events": events}).encode()
    assert steps_of(raw) == (200, ["body", "adapter", "admission", "rows", "writer"])


def test_a_refused_event_stops_at_the_rows():
    raw = json.dumps({"secret_key": SECRET, "events": [{**START, "score": "many"}]}).encode()
    assert steps_of(raw) == (400, ["body", "adapter", "admission", "rows"])
