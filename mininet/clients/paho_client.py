#!/usr/bin/python3
"""A Paho MQTT client driven line by line on stdin, for the end-to-end tests.

Commands (one per line): `sub TOPIC`, `unsub TOPIC`, `pub TOPIC QOS PAYLOAD`, `quit`. It prints one
line per event on stdout: CONNACK rc [session-present], SUBACK, UNSUBACK, PUBACK mid, MSG topic
payload, DISCONNECTED rc.
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
    a = ap.parse_args()

    c = mqtt.Client(client_id=a.id, clean_session=not a.persistent, protocol=mqtt.MQTTv311)
    if a.user:
        c.username_pw_set(a.user, a.password)
    c.on_connect = lambda cl, ud, flags, rc: out(
        "CONNACK %d%s" % (rc, " session-present" if flags.get("session present") else ""))
    c.on_subscribe = lambda cl, ud, mid, granted: out("SUBACK %s" % ",".join(map(str, granted)))
    c.on_unsubscribe = lambda cl, ud, mid: out("UNSUBACK")
    c.on_publish = lambda cl, ud, mid: out("PUBACK %d" % mid)
    c.on_message = lambda cl, ud, m: out("MSG %s %s" % (m.topic, m.payload.decode(errors="replace")))
    c.on_disconnect = lambda cl, ud, rc: out("DISCONNECTED %d" % rc)
    c.connect(a.host, a.port, a.keepalive)
    c.loop_start()
    done = threading.Event()
    for line in sys.stdin:
        parts = line.strip().split(" ", 3)
        if not parts or not parts[0]:
            continue
        if parts[0] == "sub":
            c.subscribe(parts[1], 0)
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
