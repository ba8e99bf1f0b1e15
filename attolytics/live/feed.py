"""The live view's feed: the public port's latest requests, recorded only while someone watches,
kept in a bounded ring and sent to each viewer as server-sent events as they finish.

Its `watched` is all a request looks at when no one watches: nothing is built, decoded or kept.
A viewer that connects gets what the ring holds from earlier watching, then each new entry.

What /live/events sends, one frame each (the page reads them; so may curl -N):

    event: hello      data: {"pid": ..., "size": ..., "recorded": ..., "apps": [...]}
                              first; again when a reload changes the apps
    event: request    data: {"seq": ..., "pid": ..., "time": ..., "method": ..., "route": ...,
                             "path": ..., "app": ..., "event_type": ..., "status": ..., "events": ...,
                             "ms": ..., "refusal": {"error", "event", "field", ...} or null,
                             "values": [[index, JSON text], ...], "more": ..., "body": ...}
    event: missed     data: {"count": ...}    entries not sent while the viewer read too slowly
    : keep-alive                              every HEARTBEAT_SECONDS
"""

import os
from collections import deque

import orjson
from twisted.internet.task import LoopingCall

from attolytics.live.entries import Entries
from attolytics.logs import Seldom, logger
from attolytics.reconfigurable import ReconfigurableService

log = logger(__name__)

# The requests the ring keeps, and the viewers that may watch at once (each costs a write of
# every entry).
RING_SIZE = 100
MAX_VIEWERS = 10
# How often an idle stream carries a comment: proxies keep it open, and a viewer gone is noticed.
HEARTBEAT_SECONDS = 15.0
HEARTBEAT = b": keep-alive\n\n"


def frame(kind: str, data: dict) -> bytes:
    """One server-sent event: its kind and its data as one line of JSON."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class LiveFeed(ReconfigurableService):
    """The last `size` requests recorded, and the viewers watching (at most `max_viewers`).

    A viewer has offer(app, status, frame) for an entry (it may leave out those its filter does
    not want), send(frame) for what every viewer gets, and end() to finish its stream.
    """

    # Whether anyone watches: the one attribute the site looks at for every request.
    watched = False

    def __init__(self, clock, size: int = RING_SIZE, max_viewers: int = MAX_VIEWERS):
        """`clock`: the reactor, which times the heartbeat."""
        self.clock = clock
        self.max_viewers = max_viewers
        self.pid = os.getpid()
        # (app, status, frame) of each entry, oldest first.
        self.ring: deque = deque(maxlen=size)
        self.viewers: set = set()
        self.recorded = 0
        self.entries: Entries | None = None
        self.faults = Seldom(clock)
        self.heartbeat = LoopingCall(self.beat)
        self.heartbeat.clock = clock

    def reconfigure(self, configuration) -> None:
        """Take the keys (to take out) of this configuration's apps from the next request on; with
        new keys, the ring is emptied (a key new to the service may be in an entry made before)."""
        entries, before = Entries(configuration.config.apps.values()), self.entries
        if before is not None and entries.keys != before.keys:
            self.ring.clear()
        self.entries = entries
        if before is not None and entries.apps != before.apps:
            for viewer in list(self.viewers):
                viewer.send(self.hello())

    def hello(self) -> bytes:
        """The first frame of every stream: which process it comes from, the ring's size, how many
        entries it has recorded (the last one's seq), and the apps of its configuration (the
        page's filter offers those, never an app a request named)."""
        apps = self.entries.apps if self.entries is not None else []
        return frame("hello", {"pid": self.pid, "size": self.ring.maxlen, "recorded": self.recorded, "apps": apps})

    def record(self, request) -> None:
        """Keep a finished request's entry and offer it to every viewer (called while watched)."""
        entries = self.entries
        if entries is None or not entries.shows(request):
            return
        try:
            entry = entries.entry(request)
            entry["seq"], entry["pid"] = self.recorded + 1, self.pid
            item = (entry["app"], entry["status"], frame("request", entry))
        except Exception:  # the view must never cost a request its answer, nor the site its log
            faults = self.faults.due()
            if faults:
                log.failure("the live view could not show a request to {route} ({faults} since the last "
                            "such message)", route=request.route.label, faults=faults)
            return
        self.recorded += 1
        self.ring.append(item)
        for viewer in list(self.viewers):
            viewer.offer(*item)

    def watch(self, viewer) -> list | None:
        """Send `viewer` each entry from now on: what the ring holds so far; or None when as many
        viewers as allowed watch already, or the service is not running (stopping)."""
        if len(self.viewers) >= self.max_viewers or not self.running:
            return None
        self.viewers.add(viewer)
        self.watched = True
        if not self.heartbeat.running:
            self.heartbeat.start(HEARTBEAT_SECONDS, now=False)
        return list(self.ring)

    def unwatch(self, viewer) -> None:
        """`viewer` is gone; with the last one, recording stops."""
        self.viewers.discard(viewer)
        self.watched = bool(self.viewers)
        if not self.viewers and self.heartbeat.running:
            self.heartbeat.stop()

    def beat(self) -> None:
        """A comment to every viewer."""
        for viewer in list(self.viewers):
            viewer.send(HEARTBEAT)

    def stopService(self):
        """End every stream, so that the admin port's stop does not wait for them."""
        super().stopService()
        for viewer in list(self.viewers):
            viewer.end()
            self.unwatch(viewer)
