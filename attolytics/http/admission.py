"""The one step between reading a request and making its rows: its keys (compared in constant
time), whether the service is ready, the events a request may carry, the app's rate limit, and
the values the app's tables take from the request (its headers, when it arrived, the client's
address)."""

import hmac
import math
from datetime import datetime, timezone

from attolytics.config import App, Config
from attolytics.http.answers import ApiError, OverLimit, unavailable
from attolytics.http.client_address import client_address, network_of
from attolytics.http.rate_limits import RateLimits
from attolytics.http.submission import Submission
from attolytics.request_values import APP_ID, CLIENT_IP, CLIENT_NETWORK, EVENT_TYPE, RECEIVED_AT


class Admission:
    """Admits a Submission or refuses it with its answer; `clock` tells the rate limits the time."""

    def __init__(self, config: Config, clock):
        self.clock = clock
        self.limits = RateLimits()
        self.ready = False
        self._request_keys: dict[str, frozenset] = {}  # per app, what its tables take from a request
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Admit requests by this configuration from the next one on."""
        self.config = config
        self.limits.configure(config.apps.values())

    def serve(self, tables) -> None:
        """Admit requests for these tables (name -> Table), now that they are ready."""
        self._request_keys = {
            app.app_id: frozenset().union(*(tables[t].request_keys for t in app.tables_written()))
            for app in self.config.apps.values()
        }
        self.ready = True

    def admit(self, request, submission: Submission) -> dict | None:
        """The values the app's tables take from the request (None when they take none), once the
        request may be stored; else raises the ApiError that answers it."""
        app = submission.app
        check_keys(submission.keys, app)
        if not self.ready:
            raise unavailable("the database is not ready yet; retry later")
        needed = self._request_keys.get(app.app_id)
        buckets = self.limits.buckets(app.app_id)
        address = None
        if (needed and not needed.isdisjoint(_FROM_ADDRESS)) or (buckets is not None and buckets.limit.by == "client"):
            address = client_address(request, self.config.trusted_proxies)
        self._limit(app, submission.count, buckets, address)
        if not needed:
            return None
        return request_values(request, needed, address, app.app_id, submission.event_type)

    def _limit(self, app: App, events: int, buckets, address: str | None) -> None:
        """413 past the events a request may carry (before any is checked); 429 when the app's
        rate limit has no room for them now, with Retry-After: the whole seconds until it has."""
        cap = self.config.max_events_per_request
        if events > cap:
            raise OverLimit(413, f"a request may carry at most {cap} events (max_events_per_request); "
                                 f"this one carries {events}")
        if buckets is None:
            return
        limit = buckets.limit
        if events > limit.burst:
            raise OverLimit(413, f"a request of {events} events can never fit the rate limit of app "
                                 f"{app.app_id!r}, which takes at most {limit.burst} at once; "
                                 "send fewer per request")
        wait = buckets.take(address if limit.by == "client" else None, events, self.clock.seconds())
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            raise OverLimit(429, f"app {app.app_id!r} takes {limit.in_words()}; retry in {seconds} s",
                            headers={"Retry-After": str(seconds)})


def check_keys(given: list[bytes], app: App) -> None:
    """401 without a key, 403 when any key given (a body's, a token's) is not one of the app's."""
    if not given:
        raise ApiError(401, "secret_key is missing (in the body, or as Authorization: Bearer)")
    if not all(_known_key(key, app.secret_keys) for key in given):
        raise ApiError(403, "wrong secret_key")


def _known_key(given: bytes, keys: tuple[bytes, ...]) -> bool:
    """Compare with every key in constant time, so timing tells neither the key nor which."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key)
    return found


# The values filled from the client's address.
_FROM_ADDRESS = frozenset({CLIENT_IP, CLIENT_NETWORK})


def request_values(request, needed: frozenset, address: str | None, app_id: str | None = None,
                   event_type: str | None = None) -> dict:
    """The request's headers by lower-case name (repeated ones joined with ", " as HTTP allows),
    and of the values the service fills, those `needed`: the time it arrived, the client's
    `address` and network, the app's id, and the event type the route names (None on the route
    where each event names its own)."""
    values = {
        name.decode("latin-1").lower(): ", ".join(v.decode("utf-8", errors="surrogateescape") for v in found)
        for name, found in request.requestHeaders.getAllRawHeaders()
    }
    if RECEIVED_AT in needed:
        values[RECEIVED_AT] = datetime.fromtimestamp(request.received_at, timezone.utc)
    if APP_ID in needed:
        values[APP_ID] = app_id
    if EVENT_TYPE in needed and event_type is not None:
        values[EVENT_TYPE] = event_type
    if not needed.isdisjoint(_FROM_ADDRESS):
        values[CLIENT_IP] = address
        values[CLIENT_NETWORK] = network_of(address)
    return values
