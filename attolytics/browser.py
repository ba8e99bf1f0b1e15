"""The browser client as served at /attolytics.js: the packaged script with this service's body limit."""

from importlib.resources import files

_PLACEHOLDER = b"__MAX_BODY_BYTES__"


def browser_client(max_body_bytes: int) -> bytes:
    """The text of attolytics.js for a service that accepts bodies up to `max_body_bytes`."""
    template = files("attolytics").joinpath("static/attolytics.js").read_bytes()
    if template.count(_PLACEHOLDER) != 1:
        raise RuntimeError("the packaged attolytics.js must hold its placeholder exactly once")
    return template.replace(_PLACEHOLDER, str(max_body_bytes).encode())
