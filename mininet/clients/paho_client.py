#!/usr/bin/python3
"""A Paho MQTT client driven line by line on stdin, for the end-to-end tests.

Commands (one per line): `sub TOPIC [QOS]`, `unsub TOPIC`, `pub TOPIC QOS PAYLOAD`, `quit`. It
prints one line per event on stdout: CONNACK rc [session-present], SUBACK, UNSUBACK, PUBACK mid,
MSG topic payload (with --show-qos: MSG topic qos payload), DISCONNECTED rc. --version 5 speaks
MQTT 5.0 (with --persistent: Clean Start 0 and a Session Expiry Interval of 600 s).
Uses python3-paho-mqtt (1.6) unchanged: the point is that a stock library works through the proxy.
"""

import argparse
import sys
import threading

import paho.mqtt.client as mqtt


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--id", default="")
    ap.add_argument("--keepalive", type=int, default=60)
    ap.add_argument("--persistent", action="store_true", help="clean session 0")
    ap.add_argument("--version", choices=("311", "5"), default="311")
    ap.add_argument("--show-qos", action="store_true", help="print the QoS of each message")
    a = ap.parse_args()

    v5 = a.version == "5"
    if v5:
        c = mqtt.Client(client_id=a.id, protocol=mqtt.MQTTv5)
    else:
        c = mqtt.Client(client_id=a.id, clean_session=not a.persistent, protocol=mqtt.MQTTv311)
    if a.user:
        c.username_pw_set(a.user, a.password)

    def on_connect(cl, ud, flags, rc, properties=None):
        out("CONNACK %d%s" % (int(rc.value) if v5 else rc,
                              " session-present" if flags.get("session present") else ""))

    def on_subscribe(cl, ud, mid, granted, properties=None):
        out("SUBACK %s" % ",".join(str(g.value if v5 else g) for g in granted))

    def on_unsubscribe(cl, ud, mid, properties=None, reasons=None):
        out("UNSUBACK")

    def on_message(cl, ud, m):
        text = m.payload.decode(errors="replace")
        out("MSG %s %d %s" % (m.topic, m.qos, text) if a.show_qos else "MSG %s %s" % (m.topic, text))

    def on_disconnect(cl, ud, rc, properties=None):
        out("DISCONNECTED %d" % (int(rc.value) if v5 and hasattr(rc, "value") else rc))

    c.on_connect = on_connect
    c.on_subscribe = on_subscribe
    c.on_unsubscribe = on_unsubscribe
    c.on_publish = lambda cl, ud, mid: out("PUBACK %d" % mid)
    c.on_message = on_message
    c.on_disconnect = on_disconnect
    if v5:
        from paho.mqtt.properties import Properties
        from paho.mqtt.packettypes import PacketTypes
        props = Properties(PacketTypes.CONNECT)
        if a.persistent:
            props.SessionExpiryInterval = 600
        c.connect(a.host, a.port, a.keepalive, clean_start=not a.persistent, properties=props)
    else:
        c.connect(a.host, a.port, a.keepalive)
    c.loop_start()
    done = threading.Event()
    for line in sys.stdin:
        parts = line.strip().split(" ", 3)
        if not parts or not parts[0]:
            continue
        if parts[0] == "sub":
            c.subscribe(parts[1], int(parts[2]) if len(parts) > 2 else 0)
        elif parts[0] == "unsub":
            c.unsubscribe(parts[1])
        elif parts[0] == "pub":
            c.publish(parts[1], parts[3] if len(parts) > 3 else "", int(parts[2]))
        elif parts[0] == "quit":
            break
    c.disconnect()
    c.loop_stop()
    done.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
