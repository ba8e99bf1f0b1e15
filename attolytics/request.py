"""An HTTP request that refuses a body larger than the limit, before or while it arrives."""

import json
import time
from io import BytesIO

from twisted.web import server


class LimitedRequest(server.Request):
    """A twisted.web request that never buffers more than `max_body_bytes` of body.

    A declared Content-Length over the limit is answered 413 before any of the body is read;
    a chunked body is counted as it arrives and cut off with 413 once it passes the limit.
    """

    max_body_bytes = 1024 * 1024
    refused = False
    _received = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.started = time.monotonic()

    @staticmethod
    def early_headers(path: bytes, origin: bytes | None) -> dict[str, str]:
        """Extra headers (CORS) for an answer given before the request is complete."""
        return {}

    def gotLength(self, length):
        if length is not None and length > self.max_body_bytes:
            self._refuse()
            return
        # Always in memory: the limit bounds it, and a temporary file would cost a syscall per chunk.
        self.content = BytesIO()

    def handleContentChunk(self, data):
        if self.refused:
            return
        self._received += len(data)
        if self._received > self.max_body_bytes:
            self.content = None
            self._refuse()
            return
        self.content.write(data)

    def requestReceived(self, command, path, version):
        if self.refused:
            return
        super().requestReceived(command, path, version)

    def _refuse(self):
        """Answer 413 straight away and close the connection once the answer is sent."""
        self.refused = True
        body = json.dumps(
            {"error": f"request body larger than the limit of {self.max_body_bytes} bytes"}
        ).encode()
        # The request line is parsed but not yet handed to this request: the channel holds it.
        path = getattr(self.channel, "_path", b"")
        headers = {
            "Content-Type": "application/json",
            "Connection": "close",
            "Content-Length": str(len(body)),
            **self.early_headers(path, self.requestHeaders.getRawHeaders(b"origin", [None])[0]),
        }
        head = b"HTTP/1.1 413 Content Too Large\r\n" + b"".join(
            f"{name}: {value}\r\n".encode("latin-1") for name, value in headers.items()
        ) + b"\r\n"
        transport = self.channel.transport
        transport.write(head + body)
        # Stop the peer's writes with a half close where we can, so the answer is not lost to a
        # reset; the channel's idle timeout ends the connection if the client keeps sending.
        if hasattr(transport, "loseWriteConnection"):
            transport.loseWriteConnection()
        else:
            transport.loseConnection()


def request_factory(max_body_bytes: int, early_headers=None):
    """A requestFactory for twisted.web.server.Site with the given body limit.

    `early_headers(path, origin)` gives extra headers for an early 413 (CORS, say).
    """
    attributes = {"max_body_bytes": max_body_bytes}
    if early_headers is not None:
        attributes["early_headers"] = staticmethod(early_headers)
    return type("Request", (LimitedRequest,), attributes)
