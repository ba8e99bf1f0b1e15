"""Sends Segment calls with a Python SDK, segment-analytics-python or rudder-sdk-python, then
flushes and exits, writing one JSON line on standard output: the errors the SDK reported. Its one
argument is a JSON object:
  {"sdk": "segment" or "rudder", "host": "http://127.0.0.1:PORT", "writeKey": "...",
   "options": {...more Client arguments},
   "calls": [["track", {"user_id": "u1", "event": "Level Completed", "timestamp": "<ISO 8601>", ...}], ...]}
Run by tests/test_segment_sdks.py in a process of its own, so that the SDK's blocking flush and
retries never hold the test's reactor, and a deadline can end it."""

import json
import sys
from datetime import datetime


def main() -> None:
    plan = json.loads(sys.argv[1])
    if plan["sdk"] == "segment":
        from segment.analytics import Client
    else:
        from rudderstack.analytics import Client
    errors = []

    def on_error(error, batch):
        errors.append(f"{error} ({type(error).__name__}, {len(batch)} messages)")

    client = Client(plan["writeKey"], host=plan["host"], on_error=on_error, **plan.get("options", {}))
    for method, arguments in plan["calls"]:
        if "timestamp" in arguments:
            arguments["timestamp"] = datetime.fromisoformat(arguments["timestamp"])
        getattr(client, method)(**arguments)
    client.flush()
    client.join()
    sys.stdout.write(json.dumps({"errors": errors}) + "\n")


if __name__ == "__main__":
    main()
