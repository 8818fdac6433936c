#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/). Run from anywhere."""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def rl(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def s(x):
    x = x.encode() if isinstance(x, str) else x
    return struct.pack(">H", len(x)) + x


def pkt(first, body):
    return bytes([first]) + rl(len(body)) + body


def connect(cid="c1", user=None, pw=None, will=None, keepalive=60, level=4):
    flags = 0x02
    payload = s(cid)
    if will:
        flags |= 0x04 | 0x08
        payload += s(will[0]) + s(will[1])
    if user:
        flags |= 0x80
        payload += s(user)
    if pw:
        flags |= 0x40
        payload += s(pw)
    name = "MQIsdp" if level == 3 else "MQTT"
    return pkt(0x10, s(name) + bytes([level, flags]) + struct.pack(">H", keepalive) + payload)


def publish(topic, payload, qos=0, pid=1, retain=False):
    body = s(topic) + (struct.pack(">H", pid) if qos else b"") + payload
    return pkt(0x30 | (qos << 1) | int(retain), body)


def subscribe(*filters, pid=1):
    return pkt(0x82, struct.pack(">H", pid) + b"".join(s(f) + b"\x00" for f in filters))


def unsubscribe(*filters, pid=2):
    return pkt(0xA2, struct.pack(">H", pid) + b"".join(s(f) for f in filters))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def tcp(seq, ack, flags, payload=b"", sport=40000, mss=None):
    opts = struct.pack(">BBH", 2, 4, mss) if mss else b""
    doff = (20 + len(opts)) // 4
    seq, ack = seq % 2**32, ack % 2**32  # the seeds cross the wrap on purpose
    return struct.pack(">HHIIBBHHH", sport, 1883, seq, ack, doff << 4, flags, 65535, 0, 0) + \
        opts + payload


def record(delay, segment):
    return bytes([delay]) + struct.pack(">H", len(segment)) + segment


# mqtt_codec: [state][split][stream]
write("mqtt_codec", "connect", b"\x00\x05" + connect(user="jorge", pw="passwd", will=("w", "bye")))
write("mqtt_codec", "connect31", b"\x00\x00" + connect(cid="old", level=3))
write("mqtt_codec", "session", b"\x01\x07" + subscribe("a/#", "+/b") + publish("a/b", b"x", 1)
      + publish("a/c", b"yy", 2, 3) + pkt(0x62, b"\x00\x03") + pkt(0xC0, b"")
      + unsubscribe("a/#") + pkt(0xE0, b""))
write("mqtt_codec", "bad", b"\x01\x01" + bytes.fromhex("30ffffffff01"))


def props(*items):
    b = b"".join(items)
    return rl(len(b)) + b


def connect5(cid="c5", prop=b"\x11\x00\x00\x00\x3c"):
    body = s("MQTT") + bytes([5, 0x02]) + struct.pack(">H", 60) + props(prop) + s(cid)
    return pkt(0x10, body)


# MQTT 5: a CONNECT with Session Expiry; a session (state bit 1) with a topic alias, subscription
# options, properties on PUBLISH, acks with reason codes and a DISCONNECT with reason and expiry.
write("mqtt_codec", "connect5", b"\x00\x03" + connect5())
write("mqtt_codec", "session5", b"\x03\x09"
      + pkt(0x82, struct.pack(">H", 1) + props() + s("a/#") + b"\x2c")
      + pkt(0x30, s("a/b") + props(b"\x23\x00\x01", b"\x03" + s("text")) + b"x")
      + pkt(0x30, s("") + props(b"\x23\x00\x01") + b"y")
      + pkt(0x32, s("a/c") + struct.pack(">H", 4) + props(b"\x26" + s("k") + s("v")) + b"z")
      + pkt(0x40, b"\x00\x04\x10") + pkt(0xA2, struct.pack(">H", 2) + props() + s("a/#"))
      + pkt(0xE0, b"\x04" + props(b"\x11\x00\x00\x00\x00")))

# peer_datagram: one datagram (one packet, or a batch of them back to back)
write("peer_datagram", "subscribe", subscribe("topic1", "sensors/+/t"))
write("peer_datagram", "unsubscribe", unsubscribe("topic1"))
write("peer_datagram", "legacy_unsubscribe", pkt(0xB0, struct.pack(">H", 1) + s("topic1")))
write("peer_datagram", "publish", publish("topic1", b"message1"))
write("peer_datagram", "batch", publish("a/b", b"1") + subscribe("c/#") + publish("a/c", b"22")
      + pkt(0xB0, struct.pack(">H", 2) + s("c/#")))
# the interest check: a HELLO that names the target's run (1) with the digest feature, a DIGEST
# that disagrees (so the target asks, nonce 1), the one-part answer with its SUBSCRIBE, a RESYNC
ext = lambda kind, fields: pkt(0xF0, b"MP\x01" + bytes([kind]) + struct.pack(">II", 9, 1) + fields)
write("peer_datagram", "interest_check",
      ext(1, struct.pack(">II", 7, 65536)) + ext(6, struct.pack(">IQ", 1, 0))
      + ext(8, struct.pack(">IHH", 1, 0, 1)) + subscribe("c/#") + ext(7, struct.pack(">I", 5)))

# peer_auth: the same datagrams (the target also signs each input itself), a HELLO, and an AUTH
# trailer with a MAC that no key makes
hello = pkt(0xF0, b"MP\x01\x01" + struct.pack(">IIII", 9, 0, 3, 65536))
for name, data in (("publish", publish("topic1", b"message1")), ("subscribe", subscribe("c/#")),
                   ("hello", hello)):
    write("peer_auth", name, data)
write("peer_auth", "bad_mac", publish("t", b"x") + pkt(0xF0, b"MP\x01\x05" + struct.pack(">IQ", 7, 1)
                                                       + bytes(16)))

# core_frames: [delay][len][tcp segment]...; the core's ISS is 0xfffff000
c = 0xFFFFFFF0
iss = 0xFFFFF000
conn = connect(user="jorge", pw="passwd")
sub = subscribe("t")
pub = publish("t", b"hello")
write("core_frames", "session",
      record(0, tcp(c, 0, 0x02, mss=1460))
      + record(0, tcp(c + 1, iss + 1, 0x10))
      + record(0, tcp(c + 1, iss + 1, 0x18, conn))
      + record(1, tcp(c + 1 + len(conn), iss + 5, 0x18, sub + pub))
      + record(40, tcp(c + 1 + len(conn) + len(sub + pub), iss + 5, 0x11)))
write("core_frames", "reset", record(0, tcp(c, 0, 0x02, mss=536)) + record(0, tcp(c + 1, 0, 0x04)))

# delay_table: --delay entries one per line, a first line that is a delay being --default-delay;
# the same bytes are read as an IPv4 header and as a timeline of [ms][last octet] pairs
write("delay_table", "entries", b"192.168.1.103=10\n192.168.1.104=2.5\n10.0.0.1=1000")
write("delay_table", "default", b"0.5\n192.168.1.101=0.000001\n192.168.1.102=3600000")
write("delay_table", "duplicate", b"192.168.1.103=10\n192.168.1.103=20")
write("delay_table", "bad", b"192.168.1.103\nh3=10\n1.2.3.4=1e3\n1.2.3.4=1.0000001\n=\n")
write("delay_table", "ipv4_header", bytes.fromhex("450000541c46400040019af9c0a80165c0a80167"))
write("delay_table", "ipv4_options", bytes.fromhex("46000058000040004001000001020304c0a8016701010100"))

# m2m: records [kind][length:2][bytes]; 0 REPLY payload, 1 multicast datagram, 2 raw frame for the
# core, 3 REQUEST to parse, 4 a local action and time passing


def m2m(kind, b):
    return bytes([kind]) + struct.pack(">H", len(b)) + b


def request(tid, flags, topic):
    return struct.pack(">BIBH", 1, tid, flags, len(topic)) + topic


def reply(tid, group=0xE1000000):
    return struct.pack(">BIBI", 2, tid, 0, group)


def eth_udp(src, dst, sport, dport, payload, dst_mac=b"\xff" * 6):
    udp = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 1, 17, 0, src, dst)
    return dst_mac + b"\x02\x00\x00\x00\x00\x77" + b"\x08\x00" + ip + udp


server, proxy, sender = bytes([192, 168, 1, 100]), bytes([192, 168, 1, 101]), bytes([192, 168, 1, 105])
write("m2m", "reply", m2m(0, reply(0x12345678)) + m2m(0, reply(0, 0xC0A80101)) + m2m(0, b"\x02\x00"))
write("m2m", "datagram", m2m(1, publish("topic1", b"message1")) + m2m(1, publish("a", b"x", 1))
      + m2m(1, subscribe("x")))
write("m2m", "frames", m2m(2, eth_udp(sender, bytes([225, 0, 0, 0]), 1883, 1883,
                                      publish("topic1", b"m")))
      + m2m(2, eth_udp(server, proxy, 11883, 11882, reply(1), b"\x02\x00\x00\x00\x00\x01"))
      + m2m(2, b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x01\x00\x08\x06"
            + bytes.fromhex("000108000604000202000000010" + "0c0a80164020000000001c0a80165")))
write("m2m", "requests", m2m(3, request(0x12345678, 1, b"topic1")) + m2m(3, request(1, 2, b""))
      + m2m(3, b"\x01\x00\x00\x00\x01\x00\xff\xff"))
write("m2m", "actions", m2m(4, b"t/a") + m2m(4, b"t/ab") + m2m(4, b"t/abc") + m2m(0, reply(5)))

# proxy_header: a connection's first bytes, a PROXY protocol v1 line or v2 header (HAProxy's
# doc/proxy-protocol.txt), some followed by the client's CONNECT


def crc32c(b):
    crc = 0xFFFFFFFF
    for x in b:
        crc ^= x
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def pp2(ver_cmd, fam, body):
    return V2_SIG + bytes([ver_cmd, fam]) + struct.pack(">H", len(body)) + body


def tlv(t, v):
    v = v.encode() if isinstance(v, str) else v
    return bytes([t]) + struct.pack(">H", len(v)) + v


def ssl_tlv(client, verify, subs):
    return tlv(0x20, struct.pack(">BI", client, verify) + subs)


inet = bytes([10, 0, 0, 5, 10, 0, 0, 1]) + struct.pack(">HH", 51234, 1883)
inet6 = bytes.fromhex("20010db8" + "00" * 11 + "01" + "20010db8" + "00" * 11 + "02") \
    + struct.pack(">HH", 50000, 1883)
unix = b"/run/haproxy.sock".ljust(108, b"\0") + b"\0abstract".ljust(108, b"\0")
write("proxy_header", "v1_tcp4", b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 1883\r\n" + conn)
write("proxy_header", "v1_tcp6", b"PROXY TCP6 2001:db8::1 ::ffff:192.0.2.1 65535 0\r\n")
write("proxy_header", "v1_tcp6_full", b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
      b"1:2:3:4:5:6:7:8 1 2\r\n")
write("proxy_header", "v1_unknown", b"PROXY UNKNOWN\r\n" + conn)
write("proxy_header", "v1_unknown_long", b"PROXY UNKNOWN " + b"f" * 90 + b"\r\n")
write("proxy_header", "v1_lone_lf", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n")
write("proxy_header", "v2_tcp4", pp2(0x21, 0x11, inet) + conn)
write("proxy_header", "v2_udp6", pp2(0x21, 0x22, inet6))
write("proxy_header", "v2_unix", pp2(0x21, 0x31, unix))
write("proxy_header", "v2_local", pp2(0x20, 0x00, b"") + conn)
write("proxy_header", "v2_local_inet", pp2(0x20, 0x11, inet + b"ignored"))
# HAProxy's send-proxy-v2-ssl-cn for a verified client certificate over TLS 1.3
write("proxy_header", "v2_ssl_cn", pp2(0x21, 0x11, inet + ssl_tlv(
    0x07, 0, tlv(0x21, "TLSv1.3") + tlv(0x22, "client1"))) + conn)
write("proxy_header", "v2_ssl_all", pp2(0x21, 0x11, inet + ssl_tlv(
    0x01, 0, tlv(0x21, "TLSv1.2") + tlv(0x23, "ECDHE-RSA-AES128-GCM-SHA256")
    + tlv(0x24, "RSA-SHA256") + tlv(0x25, "RSA2048") + tlv(0x2F, "x"))))
write("proxy_header", "v2_tlvs", pp2(0x21, 0x21, inet6 + tlv(0x01, "mqtt") + tlv(0x02, "broker.example")
                                      + tlv(0x05, bytes(range(128))) + tlv(0x30, "blue")
                                      + tlv(0x04, b"") + tlv(0xE0, "custom")))
crc_body = inet + tlv(0x01, "mqtt") + tlv(0x03, b"\0\0\0\0") + tlv(0x02, "broker.example")
crc_hdr = bytearray(pp2(0x21, 0x11, crc_body))
crc_at = 16 + len(inet) + 7 + 3
crc_hdr[crc_at:crc_at + 4] = struct.pack(">I", crc32c(bytes(crc_hdr)))
write("proxy_header", "v2_crc32c", bytes(crc_hdr))
write("proxy_header", "v2_tlv_past_end", pp2(0x21, 0x11, inet + b"\x01\x00\x05mq"))

# --influxdb URLs (telemetry/influx)
write("influx_url", "host_port_db", b"http://influx.example.com:8086/edge_data")
write("influx_url", "credentials", b"http://me:p%40ss@10.0.0.5/my%20db")
write("influx_url", "https", b"https://h/db")

# websocket: [flags][room][ncuts][cuts...][client bytes] (fuzz_websocket.cpp); flags bit 0 puts a
# valid upgrade request first. Frames are masked with RFC 6455 5.7's key.
WS_KEY = bytes([0x37, 0xFA, 0x21, 0x3D])


def ws_frame(first, payload, key=WS_KEY):
    n = len(payload)
    if n < 126:
        head = bytes([first, 0x80 | n])
    elif n <= 0xFFFF:
        head = bytes([first, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([first, 0x80 | 127]) + struct.pack(">Q", n)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


WS_UPGRADE = (b"GET /mqtt?x=1 HTTP/1.1\r\nHost: broker.example\r\nUpgrade: websocket\r\n"
              b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: wamp, mqttv3.1, mqtt\r\n"
              b"X-Forwarded-For: 198.51.100.7\r\n\r\n")
ws_connect = b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"
write("websocket", "upgrade_connect", b"\x00\x00\x00" + WS_UPGRADE + ws_frame(0x82, ws_connect))
write("websocket", "frames", b"\x01\x01\x03\x05\x01\x40" + ws_frame(0x82, ws_connect)
      + ws_frame(0x02, b"ab") + ws_frame(0x89, b"ping") + ws_frame(0x80, b"cd")
      + ws_frame(0x82, bytes(300)) + ws_frame(0x8A, b"") + ws_frame(0x88, b"\x03\xe8bye"))
write("websocket", "limits", b"\x03\x02\x00" + ws_frame(0x82, bytes(301)))
write("websocket", "bad_frames", b"\x01\x00\x00" + ws_frame(0x81, b"text"))
write("websocket", "bad_close", b"\x01\x00\x00" + ws_frame(0x88, b"\x03\xed"))
write("websocket", "bad_head", b"\x04\x00\x01\x07" + WS_UPGRADE.replace(b"\r\nHost", b"\nHost"))

# upstream_relay: [flags][tag][bytes]... (fuzz_upstream_relay.cpp); tag bit 7: the broker's bytes.


def chunks(flags, *parts):
    out = bytes([flags])
    for side, data in parts:
        for i in range(0, len(data), 127):
            piece = data[i:i + 127]
            out += bytes([(0x80 if side == "broker" else 0) | len(piece)]) + piece
    return out


relay_connect = connect("c1", user="u", pw="p")
relay_connack = b"\x20\x02\x00\x00"
relay_sub = pkt(0x82, b"\x00\x01" + s("a/#") + b"\x01" + s("secret/#") + b"\x00")
relay_suback = pkt(0x90, b"\x00\x01\x01")
relay_pub = pkt(0x32, s("abc") + b"\x00\x07" + b"payload")
relay_delivery = pkt(0x30, s("hidden/x") + b"p") + pkt(0x34, s("t") + b"\x00\x09" + b"q2")
write("upstream_relay", "session", chunks(1, ("client", relay_connect), ("broker", relay_connack),
                                          ("client", relay_sub), ("broker", relay_suback),
                                          ("client", relay_pub), ("broker", relay_delivery)))
write("upstream_relay", "no_hooks", chunks(0, ("client", relay_connect), ("broker", relay_connack),
                                           ("client", relay_pub)))
write("upstream_relay", "backpressure", chunks(7, ("client", relay_connect),
                                               ("broker", relay_connack),
                                               *([("client", relay_pub)] * 20)))

