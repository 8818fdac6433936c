#!/usr/bin/python3
"""An MQTT 3.1.1 session over WebSocket written frame by frame on a plain socket, for
mininet/websocket_test.py: `raw_ws_session.py HOST PORT PATH CLIENT_ID TOPIC MODE`.

It upgrades, sends CONNECT (with the testbed's username and password and a Will on TOPIC/will,
payload "will-published"), waits for the CONNACK, and then sends a PUBLISH at QoS 0 on TOPIC/last
(payload "sent-before-close"), a DISCONNECT and a Close frame (1000), each masked, one frame each:
MODE `one-segment` writes the three frames with one send() (one TCP segment, as a browser's
DISCONNECT and close() often leave), MODE `apart` waits 0.3 s between them. A server that reads
every frame before the Close delivers the PUBLISH and discards the Will in both modes (MQTT 3.1.1
3.1.2.5: a DISCONNECT removes the Will). Prints one JSON object: the CONNACK and the frames the
server sent after the burst (opcode, payload in hex) up to its FIN.
"""

import base64
import json
import os
import socket
import struct
import sys
import time

USER, PASSWORD = b"jorge", b"passwd"


def field(b):
    return struct.pack("!H", len(b)) + b


def remaining_length(n):
    out = b""
    while True:
        byte, n = n % 128, n // 128
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def packet(first, body):
    return bytes([first]) + remaining_length(len(body)) + body


def frame(opcode, payload):
    """A client frame: FIN, masked (RFC 6455 5.3), payload under 126 bytes."""
    assert len(payload) < 126
    key = os.urandom(4)
    return (bytes([0x80 | opcode, 0x80 | len(payload)]) + key
            + bytes(b ^ key[i % 4] for i, b in enumerate(payload)))


def read_frames(data):
    """Server frames (unmasked) in `data`: [(opcode, payload)], and the bytes left over."""
    frames = []
    while len(data) >= 2:
        n = data[1] & 0x7F
        at = 2
        if n == 126:
            n, at = struct.unpack("!H", data[2:4])[0], 4
        elif n == 127:
            n, at = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < at + n:
            break
        frames.append((data[0] & 0x0F, data[at:at + n]))
        data = data[at + n:]
    return frames, data


def main():
    host, port, path, client_id, topic, mode = sys.argv[1:7]
    port = int(port)
    s = socket.create_connection((host, port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Protocol: mqtt\r\n\r\n" % (path, host, port, key)).encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("closed during the handshake: %r" % data)
        data += chunk
    head, _, data = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101 "):
        raise SystemExit("handshake refused: %r" % head)
    connect = (field(b"MQTT") + bytes([4, 0xC6]) + struct.pack("!H", 60) + field(client_id.encode())
               + field((topic + "/will").encode()) + field(b"will-published") + field(USER)
               + field(PASSWORD))
    s.sendall(frame(2, packet(0x10, connect)))
    frames = []
    while not frames:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("closed before the CONNACK")
        data += chunk
        frames, data = read_frames(data)
    connack = frames[0][1].hex()
    burst = [frame(2, packet(0x30, field((topic + "/last").encode()) + b"sent-before-close")),
             frame(2, packet(0xE0, b"")),
             frame(8, struct.pack("!H", 1000))]
    try:
        if mode == "one-segment":
            s.sendall(b"".join(burst))
        else:
            for f in burst:
                s.sendall(f)
                time.sleep(0.3)
    except OSError as e:  # the server closed before the Close was written: it reads as such
        print("send: %s" % e, file=sys.stderr)
    s.settimeout(5)
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    frames, _ = read_frames(data)
    s.close()
    print(json.dumps({"connack": connack, "frames": [(op, p.hex()) for op, p in frames]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
