"""The one deadline of a shutdown, shared by the services that stop in turn, and the waits
bounded by it."""

from twisted.internet.defer import Deferred, DeferredList


class Deadline:
    """The moment by which shutdown must be done: `seconds` after it begins."""

    def __init__(self, reactor, seconds: float):
        self.reactor = reactor
        self.seconds = seconds
        self.at = None

    def start(self) -> None:
        """Shutdown begins now (once; later calls change nothing)."""
        if self.at is None:
            self.at = self.reactor.seconds() + self.seconds

    async def within(self, waiting: Deferred) -> bool:
        """Wait for `waiting` until the deadline; False if time ran out first.

        `waiting` is not cancelled when time runs out: pass a shielded() one to keep it going.
        """
        self.start()
        sleep = Deferred()
        call = self.reactor.callLater(max(0.0, self.at - self.reactor.seconds()), sleep.callback, None)
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
