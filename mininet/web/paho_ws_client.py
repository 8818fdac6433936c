#!/usr/bin/python3
"""A Paho MQTT client over WebSocket (python3-paho-mqtt 1.6, transport="websockets"), driven line
by line on stdin, for mininet/websocket_test.py.

Commands (one per line): `sub TOPIC QOS`, `pub TOPIC QOS PAYLOAD`, `quit`. One line per event on
stdout: `CONNACK rc`, `SUBACK granted,...`, `PUBACK mid` (QoS 1 and 2: the broker acknowledged it;
QoS 0: handed to the socket), `PUBLISHED mid qos` (the mid of each pub command, in order),
`MSG topic qos retain payload`, `DISCONNECTED rc`, `ERROR text` (connect() raised). --version 5
speaks MQTT 5.0; --cafile makes it wss:// (TLS). Paho is used unchanged: the point is that a stock library's WebSocket transport
(its own handshake, masking and framing) works with the proxy.
"""

import argparse
import sys

import paho.mqtt.client as mqtt


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--path", default="/mqtt")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--id", default="")
    ap.add_argument("--keepalive", type=int, default=60)
    ap.add_argument("--version", choices=("311", "5"), default="311")
    ap.add_argument("--cafile", help="wss://: TLS, the server's certificate checked against this CA")
    a = ap.parse_args()

    v5 = a.version == "5"
    if v5:
        c = mqtt.Client(client_id=a.id, protocol=mqtt.MQTTv5, transport="websockets")
    else:
        c = mqtt.Client(client_id=a.id, clean_session=True, protocol=mqtt.MQTTv311,
                        transport="websockets")
    c.ws_set_options(path=a.path)
    if a.cafile:
        c.tls_set(ca_certs=a.cafile)
    if a.user:
        c.username_pw_set(a.user, a.password)

    def code(rc):
        return int(rc.value) if hasattr(rc, "value") else int(rc)

    def on_connect(cl, ud, flags, rc, properties=None):
        out("CONNACK %d" % code(rc))

    def on_subscribe(cl, ud, mid, granted, properties=None):
        out("SUBACK %s" % ",".join(str(code(g)) for g in granted))

    def on_message(cl, ud, m):
        out("MSG %s %d %d %s" % (m.topic, m.qos, int(m.retain),
                                 m.payload.decode(errors="replace")))

    def on_disconnect(cl, ud, rc, properties=None):
        out("DISCONNECTED %d" % code(rc))

    c.on_connect = on_connect
    c.on_subscribe = on_subscribe
    c.on_message = on_message
    c.on_publish = lambda cl, ud, mid: out("PUBACK %d" % mid)
    c.on_disconnect = on_disconnect
    try:
        if v5:
            c.connect(a.host, a.port, a.keepalive, clean_start=True)
        else:
            c.connect(a.host, a.port, a.keepalive)
    except Exception as e:  # the handshake refused, no route...: the test reads why
        out("ERROR %s: %s" % (type(e).__name__, e))
        return 1
    c.loop_start()
    for line in sys.stdin:
        parts = line.strip().split(" ", 3)
        if not parts or not parts[0]:
            continue
        if parts[0] == "sub":
            c.subscribe(parts[1], int(parts[2]))
        elif parts[0] == "pub":
            info = c.publish(parts[1], parts[3] if len(parts) > 3 else "", int(parts[2]))
            out("PUBLISHED %d %s" % (info.mid, parts[2]))
        elif parts[0] == "quit":
            break
    c.disconnect()
    c.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
