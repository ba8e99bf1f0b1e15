"""The shutdown of the service, shared by the services that stop in turn: whether it began, the
one deadline all its steps keep, and the waits bounded by it."""

from twisted.internet.defer import Deferred, DeferredList


class Shutdown:
    """Begins when the service starts to stop, and must be done `seconds` later."""

    def __init__(self, reactor, seconds: float):
        self.reactor = reactor
        self.seconds = seconds
        self.deadline = None
        self._on_begin = []

    @property
    def begun(self) -> bool:
        """Whether the service has started to stop (since it last started)."""
        return self.deadline is not None

    def on_begin(self, callback) -> None:
        """Call `callback()` as soon as a shutdown begins: work that must not go on, stops."""
        self._on_begin.append(callback)

    def begin(self) -> None:
        """The shutdown begins now (once; later calls change nothing)."""
        if self.deadline is None:
            self.deadline = self.reactor.seconds() + self.seconds
            for callback in self._on_begin:
                callback()

    def reset(self) -> None:
        """The service starts (again): no shutdown has begun."""
        self.deadline = None

    async def within(self, waiting: Deferred, extra: float = 0.0, at_most: float | None = None) -> bool:
        """Wait for `waiting` until the deadline (and `extra` seconds), and `at_most` seconds if
        given; False if time ran out first.

        `waiting` is not cancelled when time runs out: pass a shielded() one to keep it going.
        """
        self.begin()
        sleep = Deferred()
        delay = max(0.0, self.deadline + extra - self.reactor.seconds())
        if at_most is not None:
            delay = min(delay, at_most)
        call = self.reactor.callLater(delay, sleep.callback, None)
        _, first = await DeferredList([waiting, sleep], fireOnOneCallback=True, consumeErrors=True)
        if call.active():
            call.cancel()
        return first == 0


def shielded(d: Deferred) -> Deferred:
    """A Deferred with d's outcome whose cancellation does not reach d."""
    shield = Deferred()

    def hand_off(result):
        if not shield.called:
            shield.callback(result)

    d.addBoth(hand_off)
    return shield
