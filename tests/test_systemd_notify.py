"""systemd.notifier: a state sent to the notify socket when there is one, to a worker's parent
when it is one, and False when it cannot be; where they go is chosen by the caller, not by the
environment the module finds."""

import os

import pytest

from attolytics import systemd
from support.twistd import notify_receiver, receive_notification

pytestmark = pytest.mark.unit


def test_notify_without_notify_socket_returns_false():
    assert systemd.notifier(None)("READY=1") is False


def test_notify_with_empty_notify_socket_returns_false():
    assert systemd.notifier("")("READY=1") is False


def test_notify_sends_the_state(tmp_path):
    address = str(tmp_path / "n.sock")
    with notify_receiver(address) as receiver:
        assert systemd.notifier(address)("READY=1") is True
        assert receive_notification(receiver, 5) == "READY=1"


def test_notify_to_a_missing_socket_returns_false(tmp_path):
    assert systemd.notifier(str(tmp_path / "nobody-listens.sock"))("READY=1") is False


def test_a_worker_tells_its_parent_on_its_pipe_whatever_notify_socket_says(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "n.sock"))
    read, write = os.pipe()
    try:
        notify = systemd.notifier(os.environ["NOTIFY_SOCKET"], parent_fd=write)
        assert notify("RELOADING=1") is True
        assert os.read(read, 100) == b"RELOADING=1\n"
    finally:
        os.close(read)
        os.close(write)


def test_a_pipe_whose_parent_is_gone_returns_false():
    read, write = os.pipe()
    os.close(read)
    try:
        assert systemd.notifier(None, parent_fd=write)("READY=1") is False
    finally:
        os.close(write)
