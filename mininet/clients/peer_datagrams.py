#!/usr/bin/python3
"""Sends datagrams of the peer protocol (docs/peering.md) that a proxy must not act on, for the
fault tests.

  peer_datagrams.py --set forged|malformed --target IP [--port P] [--bind-port P]
                    [--count N] [--rate PER_S] [--topic T] [--listen S] [--seed N]

--set forged: well-formed packets, as a peer would send them, meant to be sent from an address
that is not a configured peer: PUBLISH on --topic, SUBSCRIBE and UNSUBSCRIBE of --topic/#, the
extension's HELLO, and a DATA header with PUBLISHes behind it (a batch).

--set malformed: packets every receiver must drop, each broken in its first packet so that a
datagram is counted once: cut short, a fifth remaining-length byte, invalid UTF-8, U+0000 or a
wildcard in a PUBLISH topic, an empty topic, a topic longer than the packet, a SUBSCRIBE without
filters, an UNSUBACK where the prototype's UNSUBSCRIBE is expected, packet types not used between
peers, random bytes behind a first byte of such a type. The kind "ext-unknown" (type-15 packets of
another magic, version or kind, and a cut-short DATA header) is not malformed: a receiver skips
and counts those apart (peer_extension_unknown). PUBLISH packets carry --topic and a payload of
at least 18 bytes, so one delivered by mistake would reach the stream's subscriber and be counted.

Sends --count datagrams, cycling through the kinds, at most --rate per second (10 ms slices),
from --bind-port (0: any), prints "sent N", then listens --listen seconds for datagrams coming
back to its socket. Ends with one JSON line: {"sent":N,"kinds":{kind:n,...},"received":M,"seconds":S}.
"""

import argparse
import json
import random
import socket
import struct
import sys
import time

MAX_COUNT = 20000  # a hard cap, whatever the options say


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def utf8(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack(">H", len(b)) + b


def publish(topic, payload):
    return packet(0x30, utf8(topic) + payload)


def ext(kind, fields, epoch=0x0BADF00D, peer_epoch=0):
    return packet(0xF0, b"MP\x01" + bytes([kind]) + struct.pack(">II", epoch, peer_epoch) + fields)


def forged_kinds(topic, rng):
    def pub(i):
        return publish(topic + "/x", b"forged-%06d-%s" % (i, b"f" * 16))

    return {
        "publish": pub,
        "subscribe": lambda i: packet(0x82, struct.pack(">H", i % 65535 + 1) +
                                      utf8(topic + "/#") + b"\x00"),
        "unsubscribe": lambda i: packet(0xA2, struct.pack(">H", i % 65535 + 1) +
                                        utf8(topic + "/#")),
        "hello": lambda i: ext(1, struct.pack(">II", 0x3, 512 * 1024), epoch=0x1000 + i),
        "data-batch": lambda i: ext(2, struct.pack(">IIQ", i, 2 * i, 0)) + pub(i) + pub(i + 1),
    }


UNUSED_TYPES = [0x00, 0x10, 0x20, 0x40, 0x50, 0x62, 0x70, 0x90, 0xC0, 0xD0, 0xE0]


def malformed_kinds(topic, rng):
    def payload(i):
        return b"junk-%06d-%s" % (i, b"j" * 16)

    def truncated(i):
        whole = publish(topic, payload(i))
        return whole[:rng.randrange(1, len(whole))]

    def bad_topic(name):
        return lambda i: packet(0x30, utf8(name) + payload(i))

    invalid_utf8 = [b"fault/\xc3\x28", b"\xff\xfe", b"fault/\xc0\xaf", b"fault/\xed\xa0\x80",
                    b"fault/\xf4\x90\x80\x80", b"fault/\xe2\x82"]
    connect = packet(0x10, utf8("MQTT") + b"\x04\x02\x00\x3c" + utf8("forged"))
    return {
        "truncated": truncated,
        "remaining-length-5-bytes": lambda i: b"\x30\xff\xff\xff\xff\x7f" + payload(i),
        "invalid-utf8-topic": lambda i: packet(0x30, utf8(invalid_utf8[i % len(invalid_utf8)]) +
                                               payload(i)),
        "nul-in-topic": bad_topic(topic.encode() + b"/\x00x"),
        "wildcard-topic": lambda i: bad_topic(["fault/+/x", "#", topic + "/#", "+"][i % 4])(i),
        "empty-topic": bad_topic(b""),
        "topic-longer-than-packet": lambda i: packet(0x30, struct.pack(">H", 200) + payload(i)),
        "subscribe-without-filters": lambda i: packet(0x82, struct.pack(">H", 1)),
        "subscribe-filter-cut": lambda i: packet(0x82, struct.pack(">HH", 1, 40) + b"fault/"),
        "unsuback-not-legacy-unsubscribe": lambda i: b"\xb0\x02\x00\x01",
        "unused-type": lambda i: [b"\xc0\x00", b"\xe0\x00", b"\xd0\x00", connect][i % 4],
        "random-bytes": lambda i: bytes([UNUSED_TYPES[i % len(UNUSED_TYPES)]]) +
        bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 200))),
        "ext-unknown": lambda i: [
            packet(0xF0, b"XX\x01\x02" + bytes(24)),             # another magic
            packet(0xF0, b"MP\x02\x02" + bytes(24)),             # another version
            ext(0x40, bytes(16)),                                # an unknown kind (9 is DATA5)
            packet(0xF0, b"MP\x01\x02" + bytes(5)),              # a DATA header cut short
        ][i % 4],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=("forged", "malformed"), required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--bind-port", type=int, default=0)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--topic", default="fault/forged")
    ap.add_argument("--listen", type=float, default=0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    rng = random.Random(a.seed)
    kinds = (forged_kinds if a.set == "forged" else malformed_kinds)(a.topic, rng)
    names = sorted(kinds)
    count = min(a.count, MAX_COUNT)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", a.bind_port))
    dst = (a.target, a.port)
    sent = 0
    by_kind = {}
    start = time.monotonic()
    while sent < count:
        due = min(count, int((time.monotonic() - start) * a.rate) + 1)
        while sent < due:
            name = names[sent % len(names)]
            s.sendto(kinds[name](sent), dst)
            by_kind[name] = by_kind.get(name, 0) + 1
            sent += 1
        time.sleep(0.01)
    seconds = time.monotonic() - start
    print("sent %d" % sent, flush=True)
    received = 0
    s.settimeout(0.1)
    listen_end = time.monotonic() + a.listen
    while time.monotonic() < listen_end:
        try:
            s.recvfrom(65535)
            received += 1
        except socket.timeout:
            pass
    print(json.dumps({"sent": sent, "kinds": by_kind, "received": received,
                      "seconds": round(seconds, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
