#!/usr/bin/python3
"""A plain peer, as the Scapy prototype and a controller application written from the plain form
of docs/peering.md are: one MQTT packet per UDP datagram, no extension. For the end-to-end tests.

  plain_peer.py --proxy IP --port P --subscribe FILTER --expect N --publish TOPIC PAYLOAD

It sends SUBSCRIBE FILTER to the proxy (flags as the prototype builds them), waits for N PUBLISH
datagrams, then sends one PUBLISH datagram of its own and, last, the prototype's type-11
UNSUBSCRIBE. It prints one line per datagram it received: the hex of the first bytes, and
"PUBLISH topic payload" for a PUBLISH; a datagram that holds anything after its PUBLISH packet is
printed as "EXTRA" (a plain peer must never get a batch). Other packet types (the extension's
HELLO, which a plain peer ignores) are printed as "IGNORED type".
"""

import argparse
import socket
import struct
import sys
import time


def utf8(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def packet(first, body):
    out = bytes([first])
    n = len(body)
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out + body


def split(datagram):
    """(first byte, body, bytes after the packet) of the packet at the start of a datagram."""
    n, shift, i = 0, 0, 1
    while True:
        b = datagram[i]
        n |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            break
        shift += 7
    return datagram[0], datagram[i:i + n], datagram[i + n:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proxy", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--subscribe", required=True)
    ap.add_argument("--expect", type=int, default=1)
    ap.add_argument("--publish", nargs=2, metavar=("TOPIC", "PAYLOAD"), required=True)
    ap.add_argument("--timeout", type=float, default=20)
    a = ap.parse_args()

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", a.port))
    s.settimeout(0.2)
    dst = (a.proxy, a.port)
    # SUBSCRIBE with flags 0 and packet id 1, as the prototype built it.
    subscribe = packet(0x80, b"\x00\x01" + utf8(a.subscribe) + b"\x00")
    got = 0
    deadline = time.monotonic() + a.timeout
    last_subscribe = 0.0
    while got < a.expect and time.monotonic() < deadline:
        if got == 0 and time.monotonic() - last_subscribe > 1.0:
            s.sendto(subscribe, dst)  # again until something comes: UDP may lose it
            last_subscribe = time.monotonic()
        try:
            d, _ = s.recvfrom(65535)
        except socket.timeout:
            continue
        first, body, rest = split(d)
        if first >> 4 != 3:
            print("IGNORED type %d" % (first >> 4), flush=True)
            continue
        n = struct.unpack(">H", body[:2])[0]
        print("PUBLISH %s %s" % (body[2:2 + n].decode(), body[2 + n:].decode()), flush=True)
        if rest:
            print("EXTRA %s" % rest[:8].hex(), flush=True)
        got += 1
    if got < a.expect:
        print("TIMEOUT after %d of %d" % (got, a.expect), flush=True)
        return 1
    topic, payload = a.publish
    s.sendto(packet(0x30, utf8(topic) + payload.encode()), dst)
    # The prototype's UNSUBSCRIBE: type 11, flags 0, packet id, one length-prefixed filter.
    s.sendto(packet(0xB0, b"\x00\x02" + utf8(a.subscribe)), dst)
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
