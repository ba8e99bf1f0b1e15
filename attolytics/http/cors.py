"""CORS: which web pages may post to an app, as response headers."""

from attolytics.config import App

PREFLIGHT_MAX_AGE_SECONDS = 86400
ALLOWED_METHODS = "POST"
ALLOWED_HEADERS = "Content-Type, Content-Encoding, Authorization"
# What Segment's and RudderStack's browser SDKs send besides: their anonymous id and send time,
# and how often and why they resend.
SEGMENT_ALLOWED_HEADERS = ALLOWED_HEADERS + (
    ", AnonymousId, SentAt, X-Retry-Count, Rsa-Retry-Attempt, Rsa-Retry-Reason, Rsa-Since-First-Attempt, "
    "Rsa-Since-Last-Attempt, Rsa-Recovered")


def allow_origin(app: App, origin: str | None) -> str | None:
    """The Access-Control-Allow-Origin value for a request from `origin`, or None to allow nothing."""
    if app.allows_any_origin:
        return "*"
    if origin is not None and origin in app.allowed_origins:
        return origin
    return None


def may_post(app: App, origin: str | None) -> bool:
    """Whether a POST may store events: it comes from no web page (no Origin), or from one the app allows."""
    # A beacon needs no preflight, so the browser alone would not keep another site's pages out.
    return origin is None or allow_origin(app, origin) is not None


def response_headers(app: App, origin: str | None) -> dict[str, str]:
    """Headers every answer to a POST for `app` carries, errors included."""
    headers = {"Vary": "Origin"}
    allowed = allow_origin(app, origin)
    if allowed is not None:
        headers["Access-Control-Allow-Origin"] = allowed
        # So that a page can read how long a 503 asks it to wait.
        headers["Access-Control-Expose-Headers"] = "Retry-After"
    return headers


def preflight_headers(app: App, origin: str | None, allowed_headers: str = ALLOWED_HEADERS,
                      allowed_methods: str = ALLOWED_METHODS) -> dict[str, str]:
    """Headers of the answer to a preflight OPTIONS request."""
    headers = response_headers(app, origin)
    if "Access-Control-Allow-Origin" in headers:
        headers.update({
            "Access-Control-Allow-Methods": allowed_methods,
            "Access-Control-Allow-Headers": allowed_headers,
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_SECONDS),
        })
    return headers


def _allowing(apps: list[App], origin: str | None) -> App | None:
    """The first of `apps` that allows pages of `origin` to post, preferring one that allows any."""
    allowing = [app for app in apps if allow_origin(app, origin) is not None]
    return next((app for app in allowing if app.allows_any_origin), allowing[0] if allowing else None)


def any_app_headers(apps: list[App], origin: str | None) -> dict[str, str]:
    """Headers of an answer on a route that names no app (Segment's API), before its app is
    known: as an app of `apps` that allows the page would answer."""
    app = _allowing(apps, origin)
    return response_headers(app, origin) if app is not None else {"Vary": "Origin"}


def preflight_headers_any(apps: list[App], origin: str | None) -> dict[str, str]:
    """Headers of a preflight's answer on a route that names no app: allowed when one of `apps` allows the page."""
    app = _allowing(apps, origin)
    if app is None:
        return {"Vary": "Origin"}
    return preflight_headers(app, origin, SEGMENT_ALLOWED_HEADERS, "GET, POST")
