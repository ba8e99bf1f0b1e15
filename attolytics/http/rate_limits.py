"""Rate limits: per app, token buckets counted in events (a request of 10 events takes 10), one
for the app or one per client address, the least recently seen forgotten past a bound.

Buckets live in the process: with several workers, each keeps its own, so an app's limit is
per worker.
"""

from collections import OrderedDict

from attolytics.config import RateLimit

# Client buckets one app keeps at most; past it, the least recently seen are forgotten (a
# forgotten client starts again with a full bucket, which is what a new one gets anyway).
MAX_CLIENT_BUCKETS = 100_000


class Buckets:
    """The token buckets of one app's rate limit."""

    def __init__(self, limit: RateLimit, max_buckets: int = MAX_CLIENT_BUCKETS):
        self.limit = limit
        self.max_buckets = max_buckets
        # key (None, or a client's address) -> [tokens, when they were counted]
        self._buckets: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key, events: int, now: float) -> float | None:
        """Take `events` tokens from key's bucket at `now` (seconds): None when they were there;
        else, taking nothing, the seconds until they would be. `events` must not pass the burst."""
        rate, burst = self.limit.events_per_second, self.limit.burst
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [float(burst), now]
            if len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket[0] = min(float(burst), bucket[0] + max(0.0, now - bucket[1]) * rate)
            bucket[1] = now
        if events <= bucket[0]:
            bucket[0] -= events
            return None
        return (events - bucket[0]) / rate


class RateLimits:
    """Every app's buckets, kept across reloads for the apps whose limit stays the same."""

    def __init__(self):
        self._by_app: dict[str, Buckets] = {}

    def configure(self, apps) -> None:
        """Limit these apps (App objects) from now on."""
        kept = {}
        for app in apps:
            if app.rate_limit is None:
                continue
            found = self._by_app.get(app.app_id)
            unchanged = found is not None and found.limit == app.rate_limit
            kept[app.app_id] = found if unchanged else Buckets(app.rate_limit)
        self._by_app = kept

    def buckets(self, app_id: str) -> Buckets | None:
        """The app's buckets; None for an app without a limit."""
        return self._by_app.get(app_id)
