"""systemd.notify: a state sent to NOTIFY_SOCKET when there is one, and False when it cannot be."""

import pytest

from attolytics import systemd
from support.twistd import notify_receiver, receive_notification

pytestmark = pytest.mark.unit


def test_notify_without_notify_socket_returns_false(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False


def test_notify_with_empty_notify_socket_returns_false(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "")
    assert systemd.notify("READY=1") is False


def test_notify_sends_the_state(tmp_path, monkeypatch):
    address = str(tmp_path / "n.sock")
    with notify_receiver(address) as receiver:
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        assert systemd.notify("READY=1") is True
        assert receive_notification(receiver, 5) == "READY=1"


def test_notify_to_a_missing_socket_returns_false(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    assert systemd.notify("READY=1") is False
