"""The ports the demo and the tests give their servers (binwatch/servers.py, `free_port`)."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from binwatch import servers
from binwatch.servers import free_port


def test_a_port_is_chosen_free_at_random_and_outside_the_outgoing_connections_range() -> None:
    """The kernel's port 0 came from the range every outgoing connection's local port comes
    from: a demo's alerter lost its /metrics port so between choosing and binding it."""
    ephemeral_from = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(50)]
    assert all(servers.CHOSEN_PORTS_FROM <= port < ephemeral_from for port in ports), ports
    assert len(set(ports)) > 45, ports  # two processes choosing at once seldom choose alike
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen()


def test_a_port_a_server_listens_on_is_not_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", free_port()))
        held.listen()
        taken, other = held.getsockname()[1], free_port()
        offers = iter([taken, taken, other])
        monkeypatch.setattr(servers, "_CHOICE", SimpleNamespace(randrange=lambda *_: next(offers)))
        assert free_port() == other
