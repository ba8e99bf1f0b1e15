"""Waiting for a condition, always with a bound: a test that waits fails in time, never hangs."""

import time

from twisted.internet import reactor
from twisted.internet.task import deferLater


async def sleep(seconds: float) -> None:
    """Let the reactor run for `seconds`."""
    await deferLater(reactor, seconds, lambda: None)


async def wait_for(condition, seconds: float = 15.0, what: str | None = None) -> None:
    """Poll `condition()` (plain or async) until it is true; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = condition()
        if hasattr(result, "__await__"):
            result = await result
        if result:
            return
        await sleep(0.05)
    raise AssertionError(f"not within {seconds} s: {what or condition.__doc__ or condition}")


def wait_until(condition, seconds: float = 15.0, what: str | None = None) -> None:
    """The blocking twin of wait_for, for tests that run no reactor."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds} s: {what or condition.__doc__ or condition}")
