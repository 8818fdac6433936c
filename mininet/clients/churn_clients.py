#!/usr/bin/python3
"""Short-lived MQTT 3.1.1 clients on one host, driven line by line on stdin, for the soak benchmark
(bench/soak.py): each connects (clean session, QoS 0, no will), subscribes to or publishes on a
topic of its own, and leaves, with or without DISCONNECT.

Commands, one per line; each is answered with one JSON line on stdout that carries its id:
  sub ID TOPIC        connect as client ID, subscribe to TOPIC; answered after the SUBACK
  pub ID TOPIC N      connect as client ID, publish N messages on TOPIC; answered once the kernel
                      took them (written and drained)
  wait ID N SECONDS   until subscriber ID received N messages on its topic or SECONDS passed;
                      answered {"received": n}
  leave ID HOW        disconnect: DISCONNECT, then FIN; close: FIN without DISCONNECT; reset: RST
                      (SO_LINGER 0) without DISCONNECT
  quit                close the clients left (FIN), print the totals and exit
An error is answered {"id": ID, "error": "..."} and closes that client. A server that closes a
subscriber's connection is not an error until the subscriber is waited for.
"""

import argparse
import asyncio
import json
import socket
import struct
import sys

# Packet builders shared with the other asyncio client (this script's directory is on sys.path).
from many_clients import connect_packet, read_packet, remaining_length, subscribe_packet, utf8

DISCONNECT = b"\xe0\x00"


def out(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class Client:
    def __init__(self, reader, writer, topic):
        self.reader, self.writer, self.topic = reader, writer, topic
        self.received = 0
        self.changed = asyncio.Event()  # set on every message and when the connection ends
        self.gone = None  # why the server ended the connection, if it did
        self.task = None

    async def receive(self):
        try:
            while True:
                kind, body = await read_packet(self.reader)
                if kind != 3:
                    continue
                n = struct.unpack("!H", body[:2])[0]
                if body[2:2 + n].decode(errors="replace") == self.topic:
                    self.received += 1
                    self.changed.set()
        except (OSError, asyncio.IncompleteReadError) as e:
            self.gone = repr(e)
            self.changed.set()


class Agent:
    def __init__(self, args):
        self.args = args
        self.clients = {}
        self.connections = self.published = 0

    async def connect(self, cid, topic):
        a = self.args
        reader, writer = await asyncio.open_connection(a.host, a.port)
        self.connections += 1
        c = Client(reader, writer, topic)
        self.clients[cid] = c
        writer.write(connect_packet(cid, a.user, a.password, a.keepalive))
        kind, body = await read_packet(reader)
        if kind != 2 or body[1] != 0:
            raise RuntimeError("CONNACK %r" % body)
        return c

    async def sub(self, cid, topic):
        c = await self.connect(cid, topic)
        c.writer.write(subscribe_packet(1, [topic]))
        kind, body = await read_packet(c.reader)
        if kind != 9 or body[2:] != b"\x00":
            raise RuntimeError("SUBACK %r" % body)
        c.task = asyncio.ensure_future(c.receive())
        return {}

    async def pub(self, cid, topic, n):
        c = await self.connect(cid, topic)
        for k in range(int(n)):
            body = utf8(topic) + ("%s %d" % (cid, k)).encode()
            c.writer.write(bytes([0x30]) + remaining_length(len(body)) + body)
        await c.writer.drain()
        self.published += int(n)
        # Whatever the server sends (nothing, at QoS 0) is read and ignored.
        c.task = asyncio.ensure_future(c.receive())
        return {"sent": int(n)}

    async def wait(self, cid, n, seconds):
        c = self.clients[cid]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(seconds)
        while c.received < int(n) and c.gone is None and loop.time() < deadline:
            c.changed.clear()
            try:
                await asyncio.wait_for(c.changed.wait(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                break
        if c.received < int(n) and c.gone is not None:
            raise RuntimeError("the server closed the connection: %s" % c.gone)
        return {"received": c.received}

    async def leave(self, cid, how):
        c = self.clients.pop(cid)
        if c.task:
            c.task.cancel()
        if how == "disconnect":
            c.writer.write(DISCONNECT)
            await c.writer.drain()
        elif how == "reset":
            c.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                         struct.pack("ii", 1, 0))
            c.writer.transport.abort()
            return {}
        elif how != "close":
            raise ValueError("leave how: %s" % how)
        c.writer.close()
        try:
            await c.writer.wait_closed()
        except OSError:
            pass
        return {}

    async def run(self, words):
        cid = words[1] if len(words) > 1 else ""
        try:
            reply = await asyncio.wait_for(getattr(self, words[0])(*words[1:]),
                                           self.args.timeout)
            out(id=cid, **reply)
        except Exception as e:  # pylint: disable=broad-except
            out(id=cid, error="%s: %r" % (" ".join(words), e))
            c = self.clients.pop(cid, None)
            if c is not None:
                if c.task:
                    c.task.cancel()
                c.writer.transport.abort()


async def main_async(args):
    agent = Agent(args)
    loop = asyncio.get_running_loop()
    tasks = set()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        words = line.split()
        if not line or words == ["quit"]:
            break
        if words and words[0] in ("sub", "pub", "wait", "leave"):
            task = asyncio.ensure_future(agent.run(words))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        elif words:
            out(id="", error="unknown command: %s" % line.strip())
    if tasks:
        await asyncio.wait(tasks, timeout=args.timeout)
    for c in agent.clients.values():
        if c.task:
            c.task.cancel()
        c.writer.close()
    out(id="quit", connections=agent.connections, published=agent.published,
        left_open=len(agent.clients))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", required=True, help="the broker (proxy) the clients connect to")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--keepalive", type=int, default=60)
    ap.add_argument("--timeout", type=float, default=30, help="seconds any one command may take")
    return asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
