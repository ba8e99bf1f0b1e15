"""A POST's body as sent: its content type and its encoding, turned into the bytes it stands for.

Each check raises ApiError with the answer a client gets when it fails.
"""

import zlib

from attolytics.http.answers import ApiError


def check_content_type(request) -> None:
    """application/json in UTF-8; or text/plain, which is what a browser's sendBeacon can send
    to another origin without a preflight (its charset is ignored: the body is UTF-8 JSON)."""
    header = request.getHeader(b"content-type")
    if header is None:
        raise ApiError(415, "Content-Type must be application/json")
    media_type, *params = header.decode("latin-1").split(";")
    media_type = media_type.strip().lower()
    if media_type == "text/plain":
        return
    if media_type != "application/json":
        raise ApiError(415, f"Content-Type must be application/json, not {media_type[:100]!r}")
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise ApiError(415, "the only charset accepted is utf-8")


# zlib's window bits per encoding; "deflate" should be zlib-wrapped, but some clients send raw.
_INFLATE_WBITS = {b"gzip": (16 + zlib.MAX_WBITS,), b"deflate": (zlib.MAX_WBITS, -zlib.MAX_WBITS)}


def decoded_body(request, limit: int) -> bytes:
    """The request body, inflated when its Content-Encoding is gzip or deflate.

    Inflating stops one byte past `limit`: a small body that inflates past it gets 413 and is
    never inflated in full.
    """
    raw = request.content.getvalue()
    encoding = (request.getHeader(b"content-encoding") or b"identity").strip().lower()
    if encoding == b"identity":
        return raw
    if encoding not in _INFLATE_WBITS:
        raise ApiError(415, f"Content-Encoding {encoding[:50].decode('latin-1')!r} is not supported; "
                            "use gzip or deflate")
    return inflate(raw, encoding, limit)


def inflate(raw: bytes, encoding: bytes, limit: int) -> bytes:
    """`raw` inflated as `encoding` (b"gzip" or b"deflate"), refused once it passes `limit` bytes."""
    inflating = _inflating(raw, encoding, limit + 1)
    if inflating is None:
        raise ApiError(400, f"body is not valid {encoding.decode()} data")
    inflater, body = inflating
    if len(body) > limit:
        raise ApiError(413, f"request body inflates past the limit of {limit} bytes")
    if not inflater.eof or inflater.unused_data:
        raise ApiError(400, f"body is not valid {encoding.decode()} data (cut short or trailing bytes)")
    return body


def inflated_start(raw: bytes, encoding: bytes, most: int) -> bytes | None:
    """The first `most` bytes of `raw` inflated as `encoding` (b"gzip" or b"deflate"), inflated no
    further; None when it cannot be inflated (or the encoding is none of ours)."""
    inflating = _inflating(raw, encoding, most)
    return None if inflating is None else inflating[1]


def _inflating(raw: bytes, encoding: bytes, most: int):
    """(the inflater, the first `most` bytes of `raw` inflated) by the first window bits of
    `encoding` that read it; None when none does (or the encoding is none of ours)."""
    for wbits in _INFLATE_WBITS.get(encoding, ()):
        inflater = zlib.decompressobj(wbits)
        try:
            return inflater, inflater.decompress(raw, most)
        except zlib.error:
            continue
    return None
