"""paho-mqtt's client, with three of its costs per message cut for the outbox drain (a
backlog of events as QoS 1 publishes, each answered by a PUBACK). Profiled, those three were
half of the event loop's time in the drain, more than the outbox itself:

- **Reads**: paho reads each packet in three ``recv`` calls (its first byte, its length,
  the rest), and a last one that finds nothing: for a PUBACK, four system calls (and four
  releases of the GIL) for four bytes. Here one ``recv`` takes what the socket holds and
  paho's reads are served from it. What paho leaves unread when it returns (it reads a
  bounded number of packets per call) is in no socket any more, so the loop's readiness
  watch would never report it: ``buffered()`` says so, and the caller reads again.
- **PUBACKs**: paho decodes each one into two reason-code and two property objects, the
  most expensive step of the drain. Here a PUBACK with no properties (what a broker sends
  for an accepted publish, with or without a reason code) is decoded by hand, its reason
  code taken from a cache; anything else goes to paho as before. ``on_publish`` gets what
  paho would give it: the message id, a ``ReasonCode``, empty ``Properties`` (one instance,
  shared, read only).
- **Writes**: paho sends each queued packet with its own ``send``. Here consecutive QoS 1/2
  PUBLISH packets queued at the time of a write are joined first, up to ``JOIN_MAX`` bytes,
  so a burst of publishes leaves in one ``send``. paho does nothing after writing such a
  packet (a QoS 0 publish or a DISCONNECT, which it does act on, is never joined), and a
  joined packet written in part is resumed by paho like any other.

Nothing else changes: the same packets on the wire in the same order, paho's bookkeeping of
message ids and in-flight messages untouched. It relies on paho's private methods
``_sock_recv``, ``_handle_pubackcomp`` and ``_out_packet`` (paho-mqtt 2.2, pinned in
requirements.lock); tests/unit/test_pahoclient.py fails if they change."""

from __future__ import annotations

import ssl
import struct
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

RECV_CHUNK = 65536  # one read's most
JOIN_MAX = 65536  # the most bytes of publishes joined for one send
_PUBLISH = 0x30
_MID = struct.Struct("!H")
_NO_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]
_REASONS: dict[int, ReasonCode] = {}  # PUBACK reason codes, by value


def puback_reason(code: int) -> ReasonCode | None:
    """paho's ``ReasonCode`` for a PUBACK's reason code (shared); ``None`` if paho knows no
    such code for a PUBACK (paho decodes it then, and says what it makes of it)."""
    reason = _REASONS.get(code)
    if reason is None:
        try:
            reason = ReasonCode(PacketTypes.PUBACK, identifier=code)
        except Exception:  # paho raises its own kinds for an unknown code
            return None
        _REASONS[code] = reason
    return reason


class Client(paho.Client):
    """paho's ``Client``, reading, decoding PUBACKs and writing in bulk (module docstring).
    For a client whose socket the caller drives (``loop_read``/``loop_write`` from its own
    loop, as ``MqttConnection`` does), not for paho's own ``loop_*`` threads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""  # read from the socket, not yet by paho
        self._rpos = 0

    def reconnect(self) -> MQTTErrorCode:
        self._rbuf, self._rpos = b"", 0  # nothing of an earlier socket is read as this one's
        return super().reconnect()

    def buffered(self) -> bool:
        """Bytes read from the socket that paho has not taken yet (here, or decrypted by
        TLS and held in its socket object): the socket's readiness does not show them."""
        sock = self._sock
        if sock is None:
            return False  # closed: nothing more is read from it
        if self._rpos < len(self._rbuf):
            return True
        return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(RECV_CHUNK)  # BlockingIOError when there is none
            if len(data) <= bufsize:
                return data  # b"" too: the broker closed the connection
            self._rbuf, self._rpos = data, 0
        start = self._rpos
        self._rpos = start + bufsize
        return self._rbuf[start:self._rpos]

    def _handle_pubackcomp(self, cmd: Any) -> MQTTErrorCode:
        packet = self._in_packet["packet"]
        size = len(packet)
        if cmd != "PUBACK" or self._protocol != paho.MQTTv5 or not 2 <= size <= 3:
            return super()._handle_pubackcomp(cmd)
        reason = puback_reason(packet[2] if size == 3 else 0)
        if reason is None:
            return super()._handle_pubackcomp(cmd)
        (mid,) = _MID.unpack_from(packet)
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, reason, _NO_PROPERTIES)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def loop_write(self) -> MQTTErrorCode:
        out = self._out_packet
        if len(out) > 1:
            _join_publishes(out)
        return super().loop_write()


def _join_publishes(out: Any) -> None:
    """Join runs of consecutive QoS 1/2 PUBLISH packets not yet begun in paho's queue of
    packets to send (a deque of its packet dicts), each run into its first packet."""
    joined: list[Any] = []
    head: Any = None
    for pkt in out:
        if (pkt["command"] & 0xF0 == _PUBLISH and pkt["qos"] > 0 and pkt["pos"] == 0
                and isinstance(pkt["packet"], bytearray)):
            if head is not None and head["to_process"] + pkt["to_process"] <= JOIN_MAX:
                head["packet"] += pkt["packet"]
                head["to_process"] += pkt["to_process"]
                continue
            head = pkt
        else:
            head = None
        joined.append(pkt)
    if len(joined) < len(out):
        out.clear()
        out.extend(joined)
