"""The lean paho client (gateway/telemetry/pahoclient.py) against a scripted broker on
loopback (a real TCP socket; the test writes the broker's bytes): what it hands to paho's
callbacks is what paho itself makes of the same bytes, with fewer system calls. It relies on
paho's private methods: these tests fail if a paho release changes them."""

from __future__ import annotations

import socket
import struct
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.telemetry.pahoclient import Client

CONNACK = b"\x20\x03\x00\x00\x00"  # v5: no session, success, no properties


class Counted:
    """A socket that counts the client's recv and send calls."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.recvs = 0
        self.sends = 0

    def recv(self, n: int) -> bytes:
        self.recvs += 1
        return self._sock.recv(n)

    def send(self, data: Any) -> int:
        self.sends += 1
        return self._sock.send(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class Link:
    """A client of ``cls`` connected to a broker the test scripts."""

    def __init__(self, cls: type[paho.Client], *, queue_writes: bool = False) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.client = cls(CallbackAPIVersion.VERSION2, client_id="t", protocol=paho.MQTTv5)
        self.acks: list[tuple[int, str, int, Any]] = []
        self.messages: list[bytes] = []
        self.client.on_publish = self._on_publish
        self.client.on_message = lambda c, u, m: self.messages.append(m.payload)
        self.client.connect("127.0.0.1", self.server.getsockname()[1])
        self.broker, _ = self.server.accept()
        self.broker.settimeout(5)
        head = self.broker.recv(2)  # CONNECT (short: one length byte)
        self._read_exactly(head[1])
        self.broker.sendall(CONNACK)
        self.sock = Counted(self.client._sock)
        self.client._sock = self.sock
        self.read()
        assert self.client.is_connected()
        if queue_writes:  # as MqttConnection does: paho queues, the caller writes
            self.client.on_socket_register_write = lambda c, u, s: None

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any,
                    props: Any) -> None:
        self.acks.append((mid, str(reason), int(reason.value), props))

    def _read_exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            data += self.broker.recv(n - len(data))
        return data

    def read(self) -> None:
        """One ``loop_read``, once the broker's bytes are in the client's socket."""
        self.client._sock.setblocking(True)
        self.client._sock.settimeout(5)
        self.client._sock._sock.recv(1, socket.MSG_PEEK)
        self.client._sock.setblocking(False)
        assert self.client.loop_read() == paho.MQTT_ERR_SUCCESS

    def publishes(self, n: int) -> list[int]:
        mids = [self.client.publish("t", b"p%d" % i, qos=1).mid for i in range(n)]
        if self.client.want_write():
            self.client.loop_write()
        for _ in mids:  # PUBLISH: header, remaining length, topic, mid, props, payload
            head = self._read_exactly(2)
            self._read_exactly(head[1])
        return mids

    def close(self) -> None:
        self.broker.close()
        self.server.close()
        self.client._sock_close()


@pytest.fixture
def links():
    made: list[Link] = []

    def make(cls: type[paho.Client], **kw: Any) -> Link:
        made.append(Link(cls, **kw))
        return made[-1]

    yield make
    for link in made:
        link.close()


def puback(mid: int, tail: bytes = b"") -> bytes:
    body = struct.pack("!H", mid) + tail
    return bytes([0x40, len(body)]) + body


def test_pubacks_reach_on_publish_as_paho_decodes_them(links):
    got = {}
    for cls in (paho.Client, Client):
        link = links(cls)
        mids = link.publishes(4)
        # accepted (no reason code), accepted with "no matching subscribers", refused
        # ("not authorized"), refused with a reason string (a property: paho decodes it)
        reason_string = b"\x1f\x00\x03acl"
        link.broker.sendall(puback(mids[0]) + puback(mids[1], b"\x10")
                            + puback(mids[2], b"\x87")
                            + puback(mids[3], b"\x87" + bytes([len(reason_string)])
                                     + reason_string))
        link.read()
        got[cls] = [(mid, name, code, getattr(props, "ReasonString", None))
                    for mid, name, code, props in link.acks]
        assert link.client._inflight_messages == 0
        if cls is Client:  # one recv for the four, one that finds the socket empty
            assert link.sock.recvs == 2
    assert got[Client] == got[paho.Client] == [
        (1, "Success", 0, None), (2, "No matching subscribers", 16, None),
        (3, "Not authorized", 135, None), (4, "Not authorized", 135, "acl")]


def test_what_paho_leaves_unread_is_reported_and_read_next(links):
    link = links(Client)
    message = b"\x00\x01t\x00"  # topic "t", no properties, then the payload
    link.broker.sendall(b"".join(bytes([0x30, len(message) + 2]) + message + p
                                 for p in (b"m1", b"m2")))
    link.read()  # nothing in flight: paho takes one packet per call
    assert link.messages == [b"m1"]
    assert link.client.buffered()  # the other one is no longer in the socket
    assert link.client.loop_read() == paho.MQTT_ERR_SUCCESS
    assert link.messages == [b"m1", b"m2"]
    assert not link.client.buffered()
    link.broker.sendall(b"".join(bytes([0x30, len(message) + 2]) + message + p
                                 for p in (b"m3", b"m4")))
    link.read()
    assert link.client.buffered()
    link.client._sock_close()  # what was left of a closed connection is never read
    assert not link.client.buffered()
    assert link.client.loop_read() == paho.MQTT_ERR_NO_CONN
    assert link.messages == [b"m1", b"m2", b"m3"]


def test_queued_publishes_leave_joined_in_one_send(links):
    link = links(Client, queue_writes=True)
    for qos in (1, 1, 1, 0, 1, 1):
        link.client.publish("t", b"payload-%d" % qos, qos=qos)
    expected = b"".join(bytes(p["packet"]) for p in link.client._out_packet)
    sends = link.sock.sends
    assert link.client.loop_write() == paho.MQTT_ERR_SUCCESS
    # three QoS 1 publishes, the QoS 0 one alone (paho acts on its write), then two
    assert link.sock.sends - sends == 3
    assert link._read_exactly(len(expected)) == expected
    assert not link.client.want_write()
    link.broker.sendall(b"".join(puback(mid) for mid in (1, 2, 3, 5, 6)))
    link.read()
    assert [mid for mid, *_ in link.acks] == [4, 1, 2, 3, 5, 6]  # QoS 0 when written
    assert link.client._inflight_messages == 0
