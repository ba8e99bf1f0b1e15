"""systemd's notify protocol: tell a Type=notify unit that the service is ready, reloading or
stopping. Where the notifications go is chosen where the process starts (notifier())."""

import os
import socket

from attolytics.logs import logger

log = logger(__name__)


def notifier(notify_socket: str | None, parent_fd: int | None = None):
    """notify(state) -> bool: to the parent process on `parent_fd` (a worker's pipe), else to
    systemd's `notify_socket` ($NOTIFY_SOCKET), else nowhere."""
    if parent_fd is not None:
        return ParentPipe(parent_fd)
    if notify_socket:
        return NotifySocket(notify_socket)
    return nowhere


class NotifySocket:
    """Sends each state to systemd's notify socket (a path, or @name for an abstract one)."""

    def __init__(self, address: str):
        self.address = "\0" + address[1:] if address.startswith("@") else address

    def __call__(self, state: str) -> bool:
        """Send `state` (such as "READY=1"); False when it fails."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto(state.encode(), self.address)
        except OSError as e:
            log.warn("could not notify systemd of {state}: {error}", state=state, error=e)
            return False
        return True


class ParentPipe:
    """Writes each state as a line to the pipe of a worker's parent, which speaks to systemd for
    all its workers (supervisor.py)."""

    def __init__(self, fd: int):
        self.fd = fd

    def __call__(self, state: str) -> bool:
        """Tell the parent `state`; False when it fails."""
        try:
            os.write(self.fd, state.encode() + b"\n")
        except OSError as e:
            log.warn("could not tell the parent process {state}: {error}", state=state, error=e)
            return False
        return True


def nowhere(state: str) -> bool:
    """No one listens: False."""
    return False
