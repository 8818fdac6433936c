#!/usr/bin/python3
"""MQTT2MULTICAST in one command: one PUBLISH per message, copied by the switches to two proxies.

  s1 -> s2 (h1 h2), s3 (h3 h4), s4 (h5 h6), under the project's MQTT2MULTICAST os-ken app

  h2 mosquitto_sub --> h1 [mqtt_proxy -s]  \\
  h4 mosquitto_sub --> h3 [mqtt_proxy -s]   }-- one datagram per message to the topic's group,
  h6 mosquitto_pub --> h5 [mqtt_proxy -s]  /    replicated along the tree the controller installed

The proxies run as the prototype's mqtt_proxy_m2m.sh runs them (-s 192.168.1.100 -S 11883
-C 11882), without -F. The demo prints the tree as the switches hold it (ovs-ofctl dump-groups and
the group flows) and counts, in pcaps, the datagrams that left h5 and reached h1 and h3. Everything
is torn down at the end; the exit status says whether every message reached both subscribers with
one datagram per message.
"""

import argparse
import os
import sys
import tempfile
import time

import pcapread  # this script's directory is first on sys.path
import procs
import testbed

M2M = testbed.M2M_PROXY_ARGS


def ofctl(what, switch):
    return procs.ofctl(what, switch, check=False)  # a demo shows what it can


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy", default=testbed.DEFAULT_PROXY, help="mqtt_proxy binary")
    parser.add_argument("--messages", type=int, default=5, help="messages h6 publishes via h5")
    parser.add_argument("--logs", default=None, help="keep logs and pcaps in this directory")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("demo_m2m: needs root (Mininet creates network namespaces)", file=sys.stderr)
        return 1
    if not os.access(args.proxy, os.X_OK):
        print("demo_m2m: %s not found; build first (bash scripts/build.sh)" % args.proxy,
              file=sys.stderr)
        return 1
    logs = args.logs or tempfile.mkdtemp(prefix="mqtt_proxy-demo-m2m-")
    auth = ["-u", testbed.USER, "-P", testbed.PASSWORD]
    ip = {h: testbed.host_ip(int(h[1:])) for h in ("h1", "h2", "h3", "h4", "h5", "h6")}
    expected = ["topic1 message%d" % i for i in range(1, args.messages + 1)]

    print("*** Starting the testbed: s1 -> s2 (h1 h2), s3 (h3 h4), s4 (h5 h6); OVS userspace "
          "under mininet/controller/mqtt2multicast.py")
    with testbed.Testbed(logs, fanouts=[3, 2], proxy_binary=args.proxy,
                         controller_app=testbed.M2M_CONTROLLER_APP,
                         controller_args=["--observe-links"]) as tb:
        caps = {h: procs.Capture(tb.host(h), "%s-eth0" % h, os.path.join(logs, "%s.pcap" % h),
                                 bpf="udp") for h in ("h1", "h3", "h5", "h2", "h4", "h6")}
        tb.captures.extend(caps.values())
        proxies = {}
        for h in ("h1", "h3", "h5"):
            print("*** %s: mqtt_proxy -t 1883 -u %s -p %s -U 1883 %s"
                  % (h, testbed.USER, testbed.PASSWORD, " ".join(M2M)))
            proxies[h] = tb.start_proxy(h, extra=M2M)
        subs = {}
        for h, via in (("h2", "h1"), ("h4", "h3")):
            print("*** %s: mosquitto_sub -h %s -t topic1 -v" % (h, ip[via]))
            since = proxies[via].log_size()
            # One more than will come: it stays subscribed (and the tree stays up) until the
            # demo has shown the tree.
            p = tb.popen(h, ["mosquitto_sub", "-h", ip[via], "-t", "topic1", "-v", "-C",
                             str(len(expected) + 1), "-W", "60"] + auth)
            subs[h] = (p, procs.Lines(p.stdout))
            # The REPLY to its flags-1 REQUEST: the controller counts the proxy as a receiver.
            procs.wait_for(lambda: "topic=topic1 has group" in proxies[via].log(since), 10)
        print("*** h6: mosquitto_pub -h %s -t topic1 -l  (%d messages on one connection)"
              % (ip["h5"], args.messages))
        rc, _, err = tb.run("h6", ["mosquitto_pub", "-h", ip["h5"], "-t", "topic1", "-l"] + auth,
                            input_text="".join("message%d\n" % i
                                               for i in range(1, args.messages + 1)))
        if rc != 0:
            print("    mosquitto_pub failed (rc=%s): %s" % (rc, err.strip()))
        received = {h: [] for h in subs}
        deadline = time.monotonic() + 20
        for h, (_, lines) in subs.items():
            while len(received[h]) < len(expected) and time.monotonic() < deadline:
                line = lines.next(max(0.1, deadline - time.monotonic()))
                if line is None:
                    break
                received[h].append(line.rstrip("\n"))
        time.sleep(0.3)  # the captures' last records
        print("*** The tree of topic1, as the switches hold it (ovs-ofctl -O OpenFlow13):")
        for s in ("s4", "s1", "s2", "s3"):
            groups = [g.strip() for g in ofctl("dump-groups", s).splitlines() if "group_id" in g]
            flows = [f.split("priority=")[1].strip() for f in ofctl("dump-flows", s).splitlines()
                     if "actions=group" in f]
            print("    %s: %s | %s" % (s, "; ".join(groups) or "no group",
                                       "; ".join(flows) or "no group flow"))
        for p, _ in subs.values():
            p.terminate()
            p.wait(5)
        multicast = {h: [d for d in pcapread.read_udp_frames(c.path)
                         if d["dst"].startswith("225.")] for h, c in caps.items()}
        for p in proxies.values():
            p.stop()
        counters = {h: p.final_counters() for h, p in proxies.items()}

    sent = [d for d in multicast["h5"] if d["src"] == ip["h5"]]
    print("*** Testbed stopped")
    for h in ("h2", "h4"):
        print("*** %s received:" % h)
        for line in received[h]:
            print("    " + line)
    print("*** datagrams to the group: sent by h5 %d (m2m_publish_out %d); arrived at h1 %d, "
          "h3 %d; at the hosts without a proxy %d"
          % (len(sent), counters["h5"].get("m2m_publish_out", 0), len(multicast["h1"]),
             len(multicast["h3"]), sum(len(multicast[h]) for h in ("h2", "h4", "h6"))))
    print("*** logs and pcaps: %s" % logs)
    ok = (all(received[h] == expected for h in ("h2", "h4")) and len(sent) == args.messages
          and len(multicast["h1"]) == len(multicast["h3"]) == args.messages)
    if ok:
        print("*** OK: %d messages reached both subscribers; h5 sent each once, the switches "
              "copied it to h1 and h3" % args.messages)
        return 0
    print("*** FAILED: expected %s at h2 and h4" % expected)
    return 1


if __name__ == "__main__":
    sys.exit(main())
