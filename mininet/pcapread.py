"""Reads the testbed's pcaps: the UDP datagrams of the peer protocol, and what MQTT packet each carries."""

import socket
import struct


def read_udp_datagrams(pcap_path, port=1883):
    """(time, src ip, dst ip, payload) of every IPv4 UDP datagram to or from `port` in a pcap."""
    out = []
    try:
        with open(pcap_path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return out
    if len(data) < 24:
        return out
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nanos = magic in (0xA1B23C4D, 0x4D3CB2A1)
    off = 24
    while off + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        frame = data[off + 16:off + 16 + caplen]
        off += 16 + caplen
        if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00":
            continue
        ihl = (frame[14] & 0x0F) * 4
        if frame[14 + 9] != 17:
            continue
        udp = frame[14 + ihl:]
        sport, dport, length = struct.unpack(">HHH", udp[:6])
        if port not in (sport, dport):
            continue
        src = socket.inet_ntoa(frame[26:30])
        dst = socket.inet_ntoa(frame[30:34])
        out.append((sec + frac / (1e9 if nanos else 1e6), src, dst, udp[8:length]))
    return out


def mqtt_packet_summary(payload):
    """('PUBLISH', topic) / ('SUBSCRIBE', [filters]) / ('UNSUBSCRIBE', [filters]) for a datagram."""
    kind = payload[0] >> 4
    i, length, shift = 1, 0, 0
    while True:
        b = payload[i]
        length |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            break
        shift += 7
    body = payload[i:i + length]

    def strings(b):
        out = []
        while len(b) >= 2:
            n = struct.unpack(">H", b[:2])[0]
            out.append(b[2:2 + n].decode("utf-8", "replace"))
            b = b[2 + n:]
            if kind == 8:
                b = b[1:]  # requested QoS
        return out

    if kind == 3:
        n = struct.unpack(">H", body[:2])[0]
        return ("PUBLISH", body[2:2 + n].decode("utf-8", "replace"))
    if kind == 8:
        return ("SUBSCRIBE", strings(body[2:]))
    if kind in (10, 11):
        return ("UNSUBSCRIBE", strings(body[2:]))
    return ("TYPE%d" % kind, None)
