"""CORS: which web pages may post to an app, as response headers."""

from attolytics.config import App

PREFLIGHT_MAX_AGE_SECONDS = 86400
ALLOWED_METHODS = "POST"
ALLOWED_HEADERS = "Content-Type, Content-Encoding, Authorization"


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


def preflight_headers(app: App, origin: str | None) -> dict[str, str]:
    """Headers of the answer to a preflight OPTIONS request."""
    headers = response_headers(app, origin)
    if "Access-Control-Allow-Origin" in headers:
        headers.update({
            "Access-Control-Allow-Methods": ALLOWED_METHODS,
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_SECONDS),
        })
    return headers
