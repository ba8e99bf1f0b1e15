"""systemd's notify protocol: tell a Type=notify unit that the service is ready, reloading or stopping."""

import os
import socket

from attolytics.logs import logger

log = logger(__name__)


# In a worker process (supervisor.py), the pipe to the parent that speaks to systemd for all.
PARENT_FD = "ATTOLYTICS_NOTIFY_FD"


def notify(state: str) -> bool:
    """Send `state` (such as "READY=1") to $NOTIFY_SOCKET, or to a worker's parent; False when
    there is none or it fails."""
    parent = os.environ.get(PARENT_FD)
    if parent:
        try:
            os.write(int(parent), state.encode() + b"\n")
        except OSError as e:
            log.warn("could not tell the parent process {state}: {error}", state=state, error=e)
            return False
        return True
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket name
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(state.encode(), address)
    except OSError as e:
        log.warn("could not notify systemd of {state}: {error}", state=state, error=e)
        return False
    return True
