"""The installed twistd plugin, run as a user runs it: the one way the tests start and stop it."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from support.configs import EXAMPLE_KEY
from support.http import exchange, post

REPO = Path(__file__).resolve().parents[2]
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
STOP_TIMEOUT = 30
READY_WAIT = 60


def listen_on(port: int) -> str:
    """The endpoint description of 127.0.0.1:`port`."""
    return f"tcp:{port}:interface=127.0.0.1"


def environment(changes=None) -> dict:
    """The test's environment with `changes`: a name given None is left out."""
    result = dict(os.environ)
    for name, value in (changes or {}).items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


class Twistd:
    """A twistd process of a test, run in `cwd` (outside the repo, so only the installed plugin
    is found); its output goes to a file, which a pipe left unread could not hold.

    `env` adds to the test's environment; a name given None is taken out of it.
    """

    def __init__(self, cwd, args, env=None, merge_output=True):
        self.cwd = Path(cwd)
        self.out_path = self.cwd / f"twistd-{time.monotonic_ns()}.out"
        self.err_path = self.out_path if merge_output else self.out_path.with_suffix(".err")
        with open(self.out_path, "wb") as out, open(self.err_path, "ab") as err:
            self.process = subprocess.Popen(
                TWISTD + list(args), cwd=cwd, stdout=out,
                stderr=subprocess.STDOUT if merge_output else err,
                env=environment(env),
            )
        self.terminated = False

    @property
    def output(self) -> str:
        """What it wrote so far (standard output and error, unless kept apart)."""
        return self.out_path.read_text(errors="replace")

    @property
    def errors(self) -> str:
        """What it wrote to standard error, when kept apart."""
        return self.err_path.read_text(errors="replace")

    @property
    def returncode(self):
        return self.process.poll()

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self) -> None:
        """Send SIGTERM once."""
        if not self.terminated and self.alive():
            self.terminated = True
            self.process.send_signal(signal.SIGTERM)

    def wait(self, seconds: float = STOP_TIMEOUT) -> float | None:
        """Seconds until it exits; None, and killed, when it does not within `seconds`."""
        began = time.monotonic()
        try:
            self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            return None
        return time.monotonic() - began

    def stop(self, seconds: float = STOP_TIMEOUT) -> float | None:
        """SIGTERM, then wait: the seconds it took, or None when it had to be killed."""
        self.terminate()
        return self.wait(seconds)


@contextlib.contextmanager
def serve(cwd, *args, env=None):
    """`twistd -n attolytics ARGS` in `cwd`, stopped (SIGTERM, then killed if need be) on leaving."""
    run = Twistd(cwd, ["-n", "--pidfile=", "attolytics", *args], env)
    try:
        yield run
    finally:
        if run.stop() is None:
            with open(run.out_path, "a") as out:
                out.write(f"\n[killed: twistd did not stop within {STOP_TIMEOUT} s of SIGTERM]")


def run_twistd(cwd, *args, seconds: float = 60) -> Twistd:
    """Run `twistd ARGS` to its end (a daemon's parent, or a start that fails); standard output
    and error are kept apart."""
    run = Twistd(cwd, args, merge_output=False)
    if run.wait(seconds) is None:
        raise AssertionError(f"twistd {' '.join(args)} did not end within {seconds} s")
    return run


def wait_until_answering(port: int, run: Twistd | None = None, seconds: float = READY_WAIT,
                         path: str = "/apps/mygame/events/game_events", key: str = EXAMPLE_KEY):
    """Poll with an empty POST until the port answers HTTP at all (even 503); return the status."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert run is None or run.alive(), f"twistd exited early with {run.returncode}:\n{run.output}"
        try:
            return post(port, path, {"secret_key": key, "events": []})[0]
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing answered on port {port} within {seconds} s")


def wait_until_served(port: int, run: Twistd | None = None, seconds: float = READY_WAIT,
                      path: str = "/apps/mygame/events/game_events", key: str = EXAMPLE_KEY,
                      host: str = "127.0.0.1"):
    """Poll until an empty POST gets an answer other than 503; return (status, body)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert run is None or run.alive(), f"twistd exited early with {run.returncode}:\n{run.output}"
        try:
            status, body = post(port, path, {"secret_key": key, "events": []}, host=host)
            if status != 503:
                return status, body
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("the service did not become ready")


def wait_until_ready(port: int, run: Twistd, seconds: float = READY_WAIT) -> None:
    """Poll GET /readyz until it answers 200."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert run.alive(), f"twistd exited early with {run.returncode}:\n{run.output}"
        try:
            if exchange(port, "GET", "/readyz", timeout=10).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not ready within {seconds} s")


# --- systemd's side of the notify protocol ------------------------------------------------------


@contextlib.contextmanager
def notify_receiver(address):
    """A datagram socket bound to `address` (a path, or "\\0name" in the abstract namespace), as
    systemd listens on NOTIFY_SOCKET."""
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        receiver.bind(address)
        yield receiver
    finally:
        receiver.close()


def receive_notification(receiver, seconds: float = READY_WAIT) -> str:
    """The next datagram as text; fails the test when none comes within `seconds`."""
    receiver.settimeout(seconds)
    try:
        return receiver.recv(4096).decode()
    except socket.timeout:
        raise AssertionError(f"no systemd notification within {seconds} s") from None


def wait_for_notification(receiver, state: str, seconds: float = READY_WAIT) -> list[str]:
    """Read notifications until one holds `state` as a line; return all received so far."""
    deadline = time.monotonic() + seconds
    seen = []
    while state not in [line for message in seen for line in message.splitlines()]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{state} did not arrive; got {seen}")
        seen.append(receive_notification(receiver, remaining))
    return seen
