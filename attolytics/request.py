"""An HTTP request that refuses a body larger than the limit, before or while it arrives."""

import json

from twisted.web import server


class LimitedRequest(server.Request):
    """A twisted.web request that never buffers more than `max_body_bytes` of body.

    A declared Content-Length over the limit is answered 413 before any of the body is read;
    a chunked body is counted as it arrives and cut off with 413 once it passes the limit.
    """

    max_body_bytes = 1024 * 1024
    # Extra headers for the early 413 (CORS, say); set by the API per request path if needed.
    refused = False
    _received = 0

    def gotLength(self, length):
        if length is not None and length > self.max_body_bytes:
            self._refuse()
            return
        # Always in memory: the limit bounds it, and a temporary file would cost a syscall per chunk.
        from io import BytesIO

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
        head = (
            b"HTTP/1.1 413 Content Too Large\r\n"
            b"Content-Type: application/json\r\n"
            b"Connection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        transport = self.channel.transport
        transport.write(head + body)
        # Stop the peer's writes with a half close where we can, so the answer is not lost to a
        # reset; the channel's idle timeout ends the connection if the client keeps sending.
        if hasattr(transport, "loseWriteConnection"):
            transport.loseWriteConnection()
        else:
            transport.loseConnection()


def request_factory(max_body_bytes: int):
    """A requestFactory for twisted.web.server.Site with the given body limit."""
    return type("Request", (LimitedRequest,), {"max_body_bytes": max_body_bytes})
