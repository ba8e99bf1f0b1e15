"""The tests' one HTTP client (http.client underneath), and raw sockets for what a client would
never send."""

import http.client
import json
import socket
from dataclasses import dataclass

from twisted.internet.threads import deferToThread

from support.configs import SECRET

ANSWER_TIMEOUT = 20


@dataclass
class Answer:
    """An HTTP answer: status code, headers (lower-case names, first value) and body."""

    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


def exchange(port: int, method: str, path: str, body: bytes | None = None, headers=(),
             timeout: float = ANSWER_TIMEOUT, host: str = "127.0.0.1") -> Answer:
    """One request on a fresh connection; `headers` are (name, value) pairs or a dict, sent as
    they are (no Accept-Encoding or User-Agent of the client's own)."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        return _request(connection, method, path, body, headers)
    finally:
        connection.close()


def _request(connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None,
             headers) -> Answer:
    """One request on `connection`, its answer read in full."""
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
    connection.putrequest(method, path, skip_accept_encoding=True)
    for name, value in pairs:
        connection.putheader(name, value)
    if body is not None:
        connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    content = response.read()
    names = {}
    for name, value in response.getheaders():
        names.setdefault(name.lower(), value)
    return Answer(response.status, names, content)


class KeptAlive:
    """One connection kept open for request after request (HTTP/1.1 keep-alive), as a browser
    keeps one; exchange() opens a fresh one for each. A request that fails leaves it closed."""

    def __init__(self, port: int, timeout: float = ANSWER_TIMEOUT, host: str = "127.0.0.1"):
        self.connection = http.client.HTTPConnection(host, port, timeout=timeout)

    def exchange(self, method: str, path: str, body: bytes | None = None, headers=()) -> Answer:
        """As exchange(), on this connection."""
        try:
            return _request(self.connection, method, path, body, headers)
        except BaseException:
            self.connection.close()
            raise

    def close(self) -> None:
        self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def post(port: int, path: str, body, timeout: float = 5, host: str = "127.0.0.1") -> tuple[int, dict]:
    """POST `body` as JSON; (status, the answer's JSON)."""
    answer = exchange(port, "POST", path, json.dumps(body).encode(),
                      {"Content-Type": "application/json"}, timeout=timeout, host=host)
    return answer.status, answer.json()


class Client:
    """Talks HTTP to a service on 127.0.0.1. From a test running on the reactor, `await` its
    methods: each request runs in a thread, so the reactor goes on serving meanwhile."""

    def __init__(self, port: int):
        self.port = port

    @property
    def base_url(self) -> str:
        """The service's URL, as a page would name it."""
        return f"http://127.0.0.1:{self.port}"

    def send(self, method: str, path: str, body=None, headers=None) -> Answer:
        """A blocking request; `body` may be bytes, or anything else to send as JSON."""
        headers = dict(headers or {})
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
            if not any(name.lower() == "content-type" for name in headers):
                headers["Content-Type"] = "application/json"
        return exchange(self.port, method, path, body, headers)

    async def request(self, method: str, path: str, body=None, headers=None) -> Answer:
        """send(), from the reactor thread."""
        return await deferToThread(self.send, method, path, body, headers)

    async def post_events(self, app_id, event_type, events, secret=SECRET, headers=None) -> Answer:
        """POST events to the typed route."""
        body = {"secret_key": secret, "events": events}
        return await self.request("POST", f"/apps/{app_id}/events/{event_type}", body, headers)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_until_closed(s: socket.socket, seconds: float = 5) -> bytes:
    """Everything the server sends on `s` until it closes (or `seconds` of silence)."""
    s.settimeout(seconds)
    received = b""
    try:
        while chunk := s.recv(65536):
            received += chunk
    except OSError:
        pass
    return received


def raw_exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes over TCP and read the answer until the server closes (blocking)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_until_closed(s, 10)

