"""Holds many MQTT 3.1.1 client connections at once from one host.

Each connection sends CONNECT and SUBSCRIBE (QoS 0) and waits for its SUBACK. Prints
"ready <n>" once all are subscribed. Then, with --sentinel, each connection is subscribed to the
sentinel topic too: publish the message under test on --topic, then one on the sentinel topic
the same way. Once every connection received the sentinel (or --timeout passed), any copy of the
message that was going to reach it has (the route is in order); it prints "received <n>
duplicates <d>" (n: connections that got the message, d: extra copies) and exits 0 only if each
got exactly one. With --idle it just holds the connections until stdin closes, for memory
measurements (the keepalive, 600 s by default, is longer than any measurement, so no pings).
"""

import argparse
import asyncio
import resource
import struct
import sys
import time


def remaining_length(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def connect_packet(client_id, user, password, keepalive):
    flags = 0x02
    payload = utf8(client_id)
    if user is not None:
        flags |= 0x80
        payload += utf8(user)
    if password is not None:
        flags |= 0x40
        payload += utf8(password)
    body = utf8("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + payload
    return bytes([0x10]) + remaining_length(len(body)) + body


def subscribe_packet(packet_id, topics):
    body = struct.pack("!H", packet_id) + b"".join(utf8(t) + bytes([0]) for t in topics)
    return bytes([0x82]) + remaining_length(len(body)) + body


async def read_packet(reader):
    header = await reader.readexactly(1)
    n, shift = 0, 0
    while True:
        b = (await reader.readexactly(1))[0]
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return header[0] >> 4, await reader.readexactly(n)


class Client:
    def __init__(self, index, args):
        self.index = index
        self.args = args
        self.writer = None
        self.reader = None
        self.publishes = 0  # on --topic
        self.sentinel = False

    async def open(self):
        a = self.args
        self.reader, self.writer = await asyncio.open_connection(a.host, a.port)
        self.writer.write(connect_packet("%s-%d" % (a.prefix, self.index), a.user, a.password,
                                         a.keepalive))
        kind, body = await read_packet(self.reader)
        if kind != 2 or body[1] != 0:
            raise RuntimeError("CONNACK %r" % body)
        topics = [a.topic] + ([a.sentinel] if a.sentinel else [])
        self.writer.write(subscribe_packet(1, topics))
        kind, body = await read_packet(self.reader)
        if kind != 9 or body[2:] != bytes(len(topics)):
            raise RuntimeError("SUBACK %r" % body)

    async def receive(self):
        while True:
            kind, body = await read_packet(self.reader)
            if kind != 3:
                continue
            n = struct.unpack("!H", body[:2])[0]
            if self.args.sentinel and body[2:2 + n] == self.args.sentinel.encode():
                self.sentinel = True
            else:
                self.publishes += 1


async def open_all(clients, batch):
    for start in range(0, len(clients), batch):
        await asyncio.gather(*(c.open() for c in clients[start:start + batch]))


async def main_async(args):
    clients = [Client(i, args) for i in range(args.count)]
    started = time.monotonic()
    await asyncio.wait_for(open_all(clients, args.batch), args.timeout)
    print("ready %d in %.3f s" % (len(clients), time.monotonic() - started), flush=True)
    readers = [asyncio.ensure_future(c.receive()) for c in clients]
    if args.idle:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        ok = True
    else:
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline and not all(c.sentinel for c in clients):
            await asyncio.sleep(0.05)
        got = sum(1 for c in clients if c.publishes >= 1)
        dup = sum(c.publishes - 1 for c in clients if c.publishes > 1)
        print("received %d duplicates %d" % (got, dup), flush=True)
        ok = got == len(clients) and dup == 0
    for r in readers:
        r.cancel()
    for c in clients:
        c.writer.close()
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=100, help="connections opened concurrently")
    ap.add_argument("--topic", default="many/all")
    ap.add_argument("--sentinel", help="topic published after the message under test (needed "
                    "without --idle)")
    ap.add_argument("--prefix", default="many")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--keepalive", type=int, default=600)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--idle", action="store_true")
    args = ap.parse_args()
    if not args.idle and not args.sentinel:
        ap.error("--sentinel is needed without --idle")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.count + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(want, soft), hard), hard))
    try:
        return asyncio.run(main_async(args))
    except (OSError, RuntimeError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
        print("error: %r" % (e,), flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
