#!/usr/bin/python3
"""The main job: two proxies in the reference testbed deliver messages between stock clients.

  h2 --(TCP)--> h1 [mqtt_proxy] ==(UDP peering)== h4 [mqtt_proxy] <--(TCP)-- h3
  mosquitto_sub                                                     mosquitto_pub

The proxies run with the prototype's launch line. The subscriber on h2 (via h1) receives what h3
publishes via h4, and also what h3 publishes via h1 (same-proxy delivery). Everything is torn down at
the end; the exit status says whether every message arrived.
"""

import argparse
import os
import sys
import tempfile

import testbed  # this script's directory is first on sys.path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy", default=testbed.DEFAULT_PROXY, help="mqtt_proxy binary")
    parser.add_argument("--messages", type=int, default=5, help="messages h3 publishes via h4")
    parser.add_argument("--logs", default=None, help="keep logs and pcaps in this directory")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("demo: needs root (Mininet creates network namespaces)", file=sys.stderr)
        return 1
    if not os.access(args.proxy, os.X_OK):
        print("demo: %s not found; build first (cmake -B build && cmake --build build)" % args.proxy,
              file=sys.stderr)
        return 1
    logs = args.logs or tempfile.mkdtemp(prefix="mqtt_proxy-demo-")
    user, password = testbed.USER, testbed.PASSWORD
    expected = ["message%d" % i for i in range(1, args.messages + 1)] + ["via-h1"]

    h1_ip, h4_ip = testbed.host_ip(1), testbed.host_ip(4)
    auth = ["-u", user, "-P", password]

    print("*** Starting the reference testbed (s1; s2: h1 h2; s3: h3 h4; OVS userspace + os-ken)")
    with testbed.Testbed(logs, proxy_binary=args.proxy) as tb:
        tb.capture("h1")
        tb.capture("h4")
        print("*** h1: mqtt_proxy -t 1883 -u %s -p %s -F %s -U 1883" % (user, password, h4_ip))
        h1 = tb.start_proxy("h1", peers=[h4_ip])
        print("*** h4: mqtt_proxy -t 1883 -u %s -p %s -F %s -U 1883" % (user, password, h1_ip))
        h4 = tb.start_proxy("h4", peers=[h1_ip])

        print("*** h2: mosquitto_sub -h %s -t topic1 -u %s -P %s -v" % (h1_ip, user, password))
        sub = tb.popen("h2", ["mosquitto_sub", "-h", h1_ip, "-t", "topic1"] + auth +
                       ["-v", "-C", str(len(expected)), "-W", "60"])
        # The first subscriber of topic1 on h1 makes h1 send SUBSCRIBE to h4; wait until h4 has it.
        if not h4.wait_peer_interest("topic1"):
            print("demo: the subscription did not reach h4", file=sys.stderr)

        for i in range(1, args.messages + 1):
            msg = "message%d" % i
            print("*** h3: mosquitto_pub -h %s -t topic1 -u %s -P %s -m %s"
                  % (h4_ip, user, password, msg))
            rc, _, err = tb.run("h3", ["mosquitto_pub", "-h", h4_ip, "-t", "topic1"] + auth +
                                ["-m", msg])
            if rc != 0:
                print("    mosquitto_pub failed (rc=%s): %s" % (rc, err.strip()))
        print("*** h3: mosquitto_pub -h %s -t topic1 ... -m via-h1 (same proxy as h2)" % h1_ip)
        tb.run("h3", ["mosquitto_pub", "-h", h1_ip, "-t", "topic1"] + auth + ["-m", "via-h1"])

        try:
            out, _ = sub.communicate(timeout=20)
        except Exception:  # noqa: BLE001
            sub.kill()
            out, _ = sub.communicate()
        received = [line.split(" ", 1)[1] for line in out.decode().splitlines() if " " in line]
        print("*** h2 received:")
        for line in out.decode().splitlines():
            print("    " + line)
        h1.stop()
        h4.stop()
        counters = {"h1": h1.final_counters(), "h4": h4.final_counters()}

    print("*** Testbed stopped")
    print("*** h4 forwarded %d PUBLISH datagram(s) to h1; h1 delivered %d message(s) to subscribers"
          % (counters["h4"].get("peer_publish_out", 0),
             counters["h1"].get("mqtt_publish_delivered", 0)))
    print("*** logs and pcaps: %s" % logs)
    if received == expected:
        print("*** OK: %d of %d messages arrived, in order" % (len(received), len(expected)))
        return 0
    print("*** FAILED: expected %s, received %s" % (expected, received))
    return 1


if __name__ == "__main__":
    sys.exit(main())
