"""Reads the testbed's pcaps: the UDP datagrams of the peer protocol, and the MQTT packets they carry.

Both readers take whatever they are given. The tests read a pcap while tcpdump is still writing it,
so its last record may be incomplete; a snap length can cut a frame; a datagram can hold anything.
A truncated record ends the read (the records before it stand), a frame too short for its headers
is skipped, and a packet cut short is summarised as far as it goes. Only a file that is not a pcap
at all (an unknown magic number, a link type other than Ethernet) is an error.
"""

import socket
import struct
from collections import Counter

LINKTYPE_ETHERNET = 1
ETH_HEADER = 14
ETHERTYPE_IPV4 = b"\x08\x00"
IPPROTO_UDP = 17
UDP_HEADER = 8
# A record longer than this is not a frame: the file is corrupt from here on.
MAX_RECORD = 256 * 1024

_MAGICS = {  # magic as read little-endian -> (byte order, fraction of a second per unit)
    0xA1B2C3D4: ("<", 1e6), 0xA1B23C4D: ("<", 1e9),
    0xD4C3B2A1: (">", 1e6), 0x4D3CB2A1: (">", 1e9),
}


def read_udp_datagrams(pcap_path, port=1883):
    """(time, src ip, dst ip, payload) of every IPv4 UDP datagram to or from `port` in a pcap.

    A missing or empty file (tcpdump has not written its header yet) holds none. The payload is
    what was captured of the datagram: shorter than its UDP length when the snap length cut it."""
    out = []
    for t, frame in _frames(pcap_path):
        datagram = _udp_datagram(frame, port)
        if datagram is not None:
            out.append((t,) + datagram)
    return out


def read_udp_frames(pcap_path, port=1883):
    """As read_udp_datagrams, with the headers a multicast test checks: a dict per datagram with
    time, src, dst, payload, ttl, eth_dst (aa:bb:...) and sport/dport."""
    out = []
    for t, frame in _frames(pcap_path):
        datagram = _udp_datagram(frame, port)
        if datagram is None:
            continue
        ip = frame[ETH_HEADER:]
        udp = ip[(ip[0] & 0x0F) * 4:]
        sport, dport = struct.unpack(">HH", udp[:4])
        out.append({"time": t, "src": datagram[0], "dst": datagram[1], "payload": datagram[2],
                    "ttl": ip[8], "eth_dst": ":".join("%02x" % b for b in frame[:6]),
                    "sport": sport, "dport": dport})
    return out


def _frames(pcap_path):
    """(time, frame) of every whole record of a pcap of Ethernet frames."""
    try:
        with open(pcap_path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return
    if len(data) < 24:
        return
    magic = struct.unpack("<I", data[:4])[0]
    if magic not in _MAGICS:
        raise ValueError("%s: not a pcap file (magic %08x)" % (pcap_path, magic))
    endian, units = _MAGICS[magic]
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    if linktype != LINKTYPE_ETHERNET:
        raise ValueError("%s: link type %d, not Ethernet" % (pcap_path, linktype))
    off = 24
    while off + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        if caplen > MAX_RECORD or off + 16 + caplen > len(data):
            break  # being written, or corrupt: nothing after it can be trusted
        yield sec + frac / units, data[off + 16:off + 16 + caplen]
        off += 16 + caplen


def _udp_datagram(frame, port):
    """(src ip, dst ip, payload) of an Ethernet frame holding a UDP datagram to or from `port`, or
    None for anything else, including a frame too short for its headers and a later fragment."""
    if len(frame) < ETH_HEADER + 20 or frame[12:14] != ETHERTYPE_IPV4:
        return None
    ip = frame[ETH_HEADER:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[0] >> 4 != 4 or ihl < 20 or ip[9] != IPPROTO_UDP:
        return None
    if struct.unpack(">H", ip[6:8])[0] & 0x1FFF:
        return None  # not the first fragment: no UDP header
    udp = ip[ihl:]
    if len(udp) < UDP_HEADER:
        return None
    sport, dport, length = struct.unpack(">HHH", udp[:6])
    if port not in (sport, dport) or length < UDP_HEADER:
        return None
    return socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20]), udp[UDP_HEADER:length]


def mqtt_packet_summary(payload):
    """What the MQTT packet at the start of a datagram is: ('PUBLISH', topic),
    ('SUBSCRIBE', [filters]), ('UNSUBSCRIBE', [filters]) or ('TYPE<n>', None).

    A packet cut short gives what can be read of it: ('PUBLISH', None) when the topic is not all
    there, the filters that are complete; ('TRUNCATED', None) when not even the fixed header is
    (an empty payload, a remaining length that ends early or runs past four bytes)."""
    if not payload:
        return ("TRUNCATED", None)
    kind = payload[0] >> 4
    i, length, shift = 1, 0, 0
    while True:
        if i >= len(payload) or i > 4:
            return ("TRUNCATED", None)
        b = payload[i]
        length |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            break
        shift += 7
    body = payload[i:i + length]

    def strings(b, qos_byte):
        out = []
        while len(b) >= 2:
            n = struct.unpack(">H", b[:2])[0]
            if len(b) < 2 + n:
                break  # cut short
            out.append(b[2:2 + n].decode("utf-8", "replace"))
            b = b[2 + n:]
            if qos_byte:
                b = b[1:]  # requested QoS
        return out

    if kind == 3:
        if len(body) < 2:
            return ("PUBLISH", None)
        n = struct.unpack(">H", body[:2])[0]
        if len(body) < 2 + n:
            return ("PUBLISH", None)
        return ("PUBLISH", body[2:2 + n].decode("utf-8", "replace"))
    if kind == 8:
        return ("SUBSCRIBE", strings(body[2:], qos_byte=True))
    if kind in (10, 11):
        return ("UNSUBSCRIBE", strings(body[2:], qos_byte=False))
    if kind == 15 and payload[0] == 0xF0 and body[:3] == b"MP\x01" and len(body) >= 4:
        # The peer protocol's extension (docs/peering.md): its own kinds.
        return ("EXT-" + EXT_KINDS.get(body[3], "KIND%d" % body[3]), None)
    return ("TYPE%d" % kind, None)


EXT_KINDS = {1: "HELLO", 2: "DATA", 3: "CREDIT", 4: "BLOCKED"}


def mqtt_packets(payload):
    """The summary (as mqtt_packet_summary gives it) of every packet in a datagram, in order: a
    batch carries several, and a datagram of the extension starts with its DATA header
    ('EXT-DATA', None). A packet cut short is the last, summarised as far as it goes."""
    out = []
    while payload:
        i, length, shift = 1, 0, 0
        complete = False
        while i < len(payload) and i <= 4:
            b = payload[i]
            length |= (b & 0x7F) << shift
            i += 1
            if not b & 0x80:
                complete = True
                break
            shift += 7
        out.append(mqtt_packet_summary(payload))
        if not complete or i + length > len(payload):
            break
        payload = payload[i + length:]
    return out


def count_packets(pcap_path, port=1883):
    """Counts the MQTT packets of the peer datagrams in a pcap by (src ip, dst ip, kind, name):
    the name is a PUBLISH's topic, each filter of a SUBSCRIBE or UNSUBSCRIBE (a packet counts once
    under every filter it names), None for the rest (the extension's headers among them).

    Returns (packets, datagrams), two Counters over the same keys: datagrams counts those holding
    at least one such packet, so packets / datagrams is the batching achieved."""
    packets, datagrams = Counter(), Counter()
    for _, src, dst, payload in read_udp_datagrams(pcap_path, port):
        keys = []
        for kind, what in mqtt_packets(payload):
            for name in what if isinstance(what, list) else [what]:
                keys.append((src, dst, kind, name))
        packets.update(keys)
        datagrams.update(set(keys))
    return packets, datagrams
