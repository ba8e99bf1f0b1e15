"""Who may post: the app's key, in the body or as a Bearer token, compared in constant time."""

import hmac

from attolytics.config import App
from attolytics.http.answers import ApiError


def bearer_token(request) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` header, if any."""
    header = request.getHeader(b"authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(b" ")
    if scheme.lower() != b"bearer" or not token.strip():
        raise ApiError(401, "Authorization must be Bearer <secret key>")
    return token.strip()


def authenticated_events(body, app: App, bearer: bytes | None) -> list:
    """The request's events, once its key (in the body, or as a Bearer token) is the app's."""
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object with secret_key and events")
    for key in body:
        if key not in ("secret_key", "events"):
            raise ApiError(400, f"unknown key {key[:100]!r} in body; expected secret_key and events")
    key = body.get("secret_key")
    if key is not None and not isinstance(key, str):
        raise ApiError(400, "secret_key must be a string")
    check_key(key, app, bearer)
    events = body.get("events")
    if not isinstance(events, list):
        raise ApiError(400, "events must be a JSON array of event objects")
    return events


def check_key(key: str | None, app: App, bearer: bytes | None) -> None:
    """401 without a key, 403 with a wrong one: the body's `key` (None or empty when it has
    none) and the Bearer token, both right when both are given."""
    given = [k for k in (key.encode("utf-8", errors="surrogatepass") if key else None, bearer) if k]
    if not given:
        raise ApiError(401, "secret_key is missing (in the body, or as Authorization: Bearer)")
    if not all(_known_key(k, app.secret_keys) for k in given):
        raise ApiError(403, "wrong secret_key")


def _known_key(given: bytes, keys: tuple[bytes, ...]) -> bool:
    """Compare with every key in constant time, so timing tells neither the key nor which."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key)
    return found
