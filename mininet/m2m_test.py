#!/usr/bin/python3
"""End-to-end tests of MQTT2MULTICAST: proxies with -s under the project's os-ken app, stock clients.

The specification's acceptance tests (docs/mqtt2multicast.md) that need proxies: T10 (end to end,
one datagram per PUBLISH, TTL 1, a plain PUBLISH inside, no unicast), T11 (one datagram whatever
the number of receiving proxies, counted on every host and in the switches' flow counters), T12
(a local subscriber and remote ones together), T13 (a pending address, and a stopped controller)
and T15 (wildcards, now and for topics created later). The controller alone (T1-T9, T14, T16,
T17) is mininet/m2m_controller_test.py's.

Two testbeds: the reference tree (-f 2 -f 2: h1, h2 on s2 and h3, h4 on s3) with proxies on h1
and h4, and a wider one (-f 4 -f 2) with the publishing proxy on one leaf, receiving proxies on two
others and a leaf off the tree. Switch ports and trees are read from the switches, never assumed.

Exit status 77 (ctest: skipped) when not root or when Mininet / Open vSwitch are missing.
"""

import argparse
import os
import re
import sys
import time
import unittest

import pcapread  # this script's directory is first on sys.path
import procs
from procs import Lines, wait_for

try:
    import testbed
except ImportError:  # Mininet imports only in Debian's /usr/bin/python3: main() skips
    testbed = None

HERE = os.path.dirname(os.path.abspath(__file__))
ARGS = None
SERVER = "192.168.1.100"
M2M = testbed.M2M_PROXY_ARGS if testbed else []
CONTROLLER_ARGS = ["--observe-links"]


def auth():
    return ["-u", testbed.USER, "-P", testbed.PASSWORD]


def multicast(datagrams):
    return [d for d in datagrams if 224 <= int(d["dst"].split(".")[0]) <= 239]


def publish_bytes(topic, message):
    body = len(topic).to_bytes(2, "big") + topic.encode() + message.encode()
    return bytes([0x30, len(body)]) + body


class M2mCase(unittest.TestCase):
    """What both testbeds' tests share: clients, logs, switches."""

    tb = None

    def subscriber(self, host, proxy_ip, topic, count, wait=60):
        p = self.tb.popen(host, ["mosquitto_sub", "-h", proxy_ip, "-v", "-C", str(count), "-W",
                                 str(wait), "-t", topic] + auth())
        return p, Lines(p.stdout)

    def publish(self, host, proxy_ip, topic, messages):
        rc, out, err = self.tb.run(host, ["mosquitto_pub", "-h", proxy_ip, "-t", topic, "-l"]
                                   + auth(), timeout=30, input_text="\n".join(messages) + "\n")
        self.assertEqual(rc, 0, "mosquitto_pub failed: %s %s" % (out, err))

    def wait_group(self, proxy, topic, since=0, timeout=10):
        """Waits until `proxy` had a REPLY for `topic` (logged after byte `since` of its log: the
        first one at info, every one at debug); returns the group."""
        pattern = re.compile(r"(?:topic=%s has group (\S+))|(?:REPLY tid=\S+ flags=\S+ topic=%s "
                             r"group=(\S+))" % (re.escape(topic), re.escape(topic)))
        found = []

        def seen():
            m = pattern.search(proxy.log(since))
            if m:
                found.append(m.group(1) or m.group(2))
            return bool(m)

        self.assertTrue(wait_for(seen, timeout), "%s never learnt the group of %s:\n%s"
                        % (proxy.host.name, topic, proxy.log()[-3000:]))
        return found[0]

    def wait_tree(self, switch, group, present=True, timeout=10):
        """Waits until `switch` has (or no longer has) a flow for `group`."""
        def has():
            return ("nw_dst=%s " % group in self.flows(switch)) == present
        self.assertTrue(wait_for(has, timeout), "%s: the flow for %s is %s:\n%s" % (
            switch, group, "missing" if present else "still there", self.flows(switch)))

    def flows(self, switch):
        return procs.ofctl("dump-flows", switch)

    def groups(self, switch):
        return procs.ofctl("dump-groups", switch)

    def group_flow_packets(self, switch, group):
        """n_packets of the switch's flow for `group` (the stats scripts' method), None without."""
        for line in self.flows(switch).splitlines():
            if "nw_dst=%s " % group in line:
                return int(re.search(r"n_packets=(\d+)", line).group(1))
        return None

    def port_toward(self, switch, neighbour):
        """The OpenFlow port number of `switch`'s link to node `neighbour`, from the links."""
        for link in self.tb.net.links:
            ends = ((link.intf1, link.intf2), (link.intf2, link.intf1))
            for a, b in ends:
                if a.node.name == switch and b.node.name == neighbour:
                    return int(self.tb.net.get(switch).ports[a])
        raise AssertionError("no link %s-%s" % (switch, neighbour))

    def receive_all(self, lines, count, timeout=20):
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            try:
                line = lines.next(max(0.1, deadline - time.monotonic()))
            except AssertionError:  # the subscriber ended (its -W ran out)
                break
            if line is None:
                break
            got.append(line.rstrip("\n"))
        return got


class Reference(M2mCase):
    """-f 2 -f 2: proxies on h1 (s2) and h4 (s3), no -F between them."""

    @classmethod
    def setUpClass(cls):
        cls.tb = testbed.Testbed(ARGS.artifacts, depth=2, fanout=2,
                                 proxy_binary=ARGS.proxy,
                                 controller_app=testbed.M2M_CONTROLLER_APP,
                                 controller_args=CONTROLLER_ARGS)
        cls.tb.start()
        try:
            cls.h1_ip, cls.h4_ip = testbed.host_ip(1), testbed.host_ip(4)
            cls.cap = {h: procs.Capture(cls.tb.host(h), "%s-eth0" % h,
                                        os.path.join(cls.tb.artifacts, "%s.pcap" % h),
                                        bpf="udp or tcp port 1883")
                       for h in ("h1", "h2", "h3", "h4")}
            cls.tb.captures.extend(cls.cap.values())
            cls.h1 = cls.tb.start_proxy("h1", extra=M2M + ["--log-level", "debug"])
            cls.h4 = cls.tb.start_proxy("h4", extra=M2M + ["--log-level", "debug"])
        except BaseException:
            cls.tb.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.tb.stop()

    def test_10_end_to_end_one_plain_datagram_per_publish(self):
        n = 5
        since = self.h1.log_size()
        # It stays subscribed while the trees are read (its last UNSUBSCRIBE would remove them).
        sub, lines = self.subscriber("h2", self.h1_ip, "topic1", n + 1)
        group = self.wait_group(self.h1, "topic1", since)
        self.assertEqual(group, "225.0.0.0")  # the first topic the controller saw
        self.publish("h3", self.h4_ip, "topic1", ["message1"] * n)
        got = self.receive_all(lines, n)
        self.assertEqual(got, ["topic1 message1"] * n, self.h4.log()[-3000:])
        # The tree, in every switch on the way: h4's edge switch, the root, h1's edge switch.
        self.assertIn("group_id=1,type=all", self.groups("s3"))
        self.assertIn("output:%d" % self.port_toward("s3", "s1"), self.groups("s3"))
        self.assertIn("output:%d" % self.port_toward("s1", "s2"), self.groups("s1"))
        self.assertIn("output:%d" % self.port_toward("s2", "h1"), self.groups("s2"))
        self.assertIn("actions=group:1", self.flows("s2"))
        # On h4's wire: exactly one datagram per PUBLISH, as the specification has it.
        wait_for(lambda: len(multicast(pcapread.read_udp_frames(self.cap["h4"].path))) >= n, 5)
        out = [d for d in multicast(pcapread.read_udp_frames(self.cap["h4"].path))
               if d["src"] == self.h4_ip]
        self.assertEqual(len(out), n)
        for d in out:
            self.assertEqual((d["dst"], d["ttl"], d["sport"], d["dport"]),
                             ("225.0.0.0", 1, 1883, 1883))
            self.assertEqual(d["eth_dst"], "ff:ff:ff:ff:ff:ff")
            self.assertEqual(d["payload"], publish_bytes("topic1", "message1"))
            self.assertEqual(d["payload"].hex(" "),
                             "30 10 00 06 74 6f 70 69 63 31 6d 65 73 73 61 67 65 31")
        unicast = [d for d in pcapread.read_udp_frames(self.cap["h4"].path)
                   if d["src"] == self.h4_ip and d not in out and d["dport"] == 1883]
        self.assertEqual(unicast, [])
        # h1 took them from its capture: n multicast PUBLISHes in, n delivered.
        into_h1 = [d for d in multicast(pcapread.read_udp_frames(self.cap["h1"].path))
                   if d["src"] == self.h4_ip]
        self.assertEqual(len(into_h1), n)
        # The host beside h4 is on no tree: the switch does not copy to it.
        self.assertEqual(multicast(pcapread.read_udp_frames(self.cap["h3"].path)), [])
        sub.terminate()
        sub.wait(10)

    def test_12_local_and_remote_subscribers_get_one_copy_each(self):
        n = 4
        since1, since4 = self.h1.log_size(), self.h4.log_size()
        local, local_lines = self.subscriber("h2", self.h1_ip, "t12", n)
        remote, remote_lines = self.subscriber("h3", self.h4_ip, "t12", n)
        self.wait_group(self.h1, "t12", since1)
        self.wait_group(self.h4, "t12", since4)
        # h1 knows the address from its subscriber already; it must still announce itself as a
        # transmitter (flags 0), or no tree carries its PUBLISHes toward h4.
        self.publish("h2", self.h1_ip, "t12", ["m%d" % i for i in range(n)])
        self.assertEqual(self.receive_all(local_lines, n), ["t12 m%d" % i for i in range(n)])
        self.assertEqual(self.receive_all(remote_lines, n), ["t12 m%d" % i for i in range(n)])
        local.wait(10)
        remote.wait(10)
        # Nothing more comes to the local subscriber: a second one would show as an extra line.
        since1 = self.h1.log_size()
        extra, extra_lines = self.subscriber("h2", self.h1_ip, "t12", n + 1, wait=4)
        self.wait_group(self.h1, "t12", since1)
        self.publish("h2", self.h1_ip, "t12", ["m%d" % i for i in range(n)])
        self.assertEqual(self.receive_all(extra_lines, n + 1, timeout=6),
                         ["t12 m%d" % i for i in range(n)])
        extra.wait(10)

    def test_13_first_publish_of_a_new_topic_waits_for_its_address(self):
        since = self.h1.log_size()
        sub, lines = self.subscriber("h2", self.h1_ip, "t13/#", 1)
        self.wait_group(self.h1, "t13/#", since)
        # One message on a topic no proxy has asked about yet: it is held at h4 until the REPLY.
        self.publish("h3", self.h4_ip, "t13/new", ["first"])
        self.assertEqual(self.receive_all(lines, 1), ["t13/new first"], self.h4.log()[-3000:])
        self.assertIn("t13/new", self.h4.log())
        sub.wait(10)

    def test_15_wildcards_now_and_later_and_no_dollar_topics_for_hash(self):
        since = self.h1.log_size()
        sub, lines = self.subscriber("h2", self.h1_ip, "sensors/#", 2)
        self.wait_group(self.h1, "sensors/#", since)
        self.publish("h3", self.h4_ip, "sensors/t1", ["21.5"])
        self.publish("h3", self.h4_ip, "sensors/t2/later", ["22.0"])  # a topic created later
        self.assertEqual(self.receive_all(lines, 2), ["sensors/t1 21.5",
                                                      "sensors/t2/later 22.0"])
        sub.wait(10)
        since = self.h1.log_size()
        everything, all_lines = self.subscriber("h2", self.h1_ip, "#", 1, wait=6)
        self.wait_group(self.h1, "#", since)
        self.publish("h3", self.h4_ip, "$SYS/x", ["no"])
        self.publish("h3", self.h4_ip, "visible", ["yes"])
        self.assertEqual(self.receive_all(all_lines, 1), ["visible yes"])
        everything.wait(10)

    def test_20_unsubscribe_shrinks_the_tree(self):
        since = self.h1.log_size()
        sub, lines = self.subscriber("h2", self.h1_ip, "t20", 1)
        group = self.wait_group(self.h1, "t20", since)
        self.publish("h3", self.h4_ip, "t20", ["x"])
        self.assertEqual(self.receive_all(lines, 1), ["t20 x"])
        sub.wait(10)
        # The last subscriber is gone: h1 sends flags 2 and the controller removes the tree.
        self.wait_tree("s2", group, present=False)

    def test_90_stopped_controller_retransmits_then_drops_and_others_go_on(self):
        since1 = self.h1.log_size()
        sub, lines = self.subscriber("h2", self.h1_ip, "topic1", 3, wait=30)
        group = self.wait_group(self.h1, "topic1", since1)
        self.wait_tree("s2", group)
        time.sleep(0.5)
        self.tb.controller.terminate()
        self.tb.controller.wait(10)
        since = self.h4.log_size()
        sent_before = len([d for d in pcapread.read_udp_frames(self.cap["h4"].path, 11883)
                           if d["dst"] == SERVER])
        self.publish("h3", self.h4_ip, "t90/nobody-answers", ["lost"])
        # Another client of the same proxy is not held up: topic1 has its tree (the switches keep
        # their flows without a controller) and its messages go on.
        self.publish("h3", self.h4_ip, "topic1", ["a", "b", "c"])
        self.assertEqual(self.receive_all(lines, 3), ["topic1 a", "topic1 b", "topic1 c"])
        sub.wait(10)
        self.assertTrue(self.h4.wait_log("held PUBLISHes dropped", timeout=15),
                        self.h4.log(since))
        requests = [d for d in pcapread.read_udp_frames(self.cap["h4"].path, 11883)
                    if d["dst"] == SERVER][sent_before:]
        t90 = [d for d in requests if b"t90/nobody-answers" in d["payload"]]
        self.assertEqual(len(t90), 3, "one REQUEST and two retransmissions")
        gaps = [round(b["time"] - a["time"], 1) for a, b in zip(t90, t90[1:])]
        self.assertTrue(0.8 <= gaps[0] <= 1.5 and 1.8 <= gaps[1] <= 2.5, gaps)
        self.assertEqual(len({d["payload"][1:5] for d in t90}), 1, "the same transaction id")
        self.assertIsNone(self.h4.proc.poll(), "the proxy is still running")
        self.assertEqual(self.h4.stop(), 0, self.h4.log()[-2000:])
        counters = self.h4.final_counters()
        self.assertEqual(counters.get("m2m_publish_dropped"), 1)
        self.assertGreaterEqual(counters.get("m2m_requests_unanswered"), 1)


class OneDatagram(M2mCase):
    """-f 4 -f 2: s1 over s2 (h1, h2), s3 (h3, h4), s4 (h5, h6), s5 (h7, h8). The publishing proxy
    on h1, receiving proxies on h3 and h5; s5 is off the tree."""

    @classmethod
    def setUpClass(cls):
        cls.tb = testbed.Testbed(ARGS.artifacts, fanouts=[4, 2],
                                 proxy_binary=ARGS.proxy,
                                 controller_app=testbed.M2M_CONTROLLER_APP,
                                 controller_args=CONTROLLER_ARGS)
        cls.tb.start()
        try:
            cls.ip = {h: testbed.host_ip(int(h[1:])) for h in ["h%d" % i for i in range(1, 9)]}
            cls.cap = {h: procs.Capture(cls.tb.host(h), "%s-eth0" % h,
                                        os.path.join(cls.tb.artifacts, "%s.pcap" % h),
                                        bpf="udp and dst net 224.0.0.0/4")
                       for h in cls.ip}
            cls.tb.captures.extend(cls.cap.values())
            cls.proxy = {h: cls.tb.start_proxy(h, extra=M2M) for h in ("h1", "h3", "h5")}
        except BaseException:
            cls.tb.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.tb.stop()

    def test_11_one_datagram_per_message_whatever_the_receivers(self):
        n = 50
        # One more than will come: they stay subscribed while the switches are read.
        subs = [self.subscriber("h4", self.ip["h3"], "t11", n + 1),
                self.subscriber("h6", self.ip["h5"], "t11", n + 1)]
        group = self.wait_group(self.proxy["h3"], "t11")
        self.wait_group(self.proxy["h5"], "t11")
        self.publish("h2", self.ip["h1"], "t11", ["m%d" % i for i in range(n)])
        for p, lines in subs:
            self.assertEqual(self.receive_all(lines, n), ["t11 m%d" % i for i in range(n)])
        time.sleep(0.5)  # the captures' last records
        count = {h: len(pcapread.read_udp_frames(c.path)) for h, c in self.cap.items()}
        self.assertEqual(count["h1"], n, "the publisher sends each message once")
        self.assertEqual(count["h3"], n)
        self.assertEqual(count["h5"], n)
        for h in ("h2", "h4", "h6", "h7", "h8"):
            self.assertEqual(count[h], 0, "%s is on no tree: %s" % (h, count))
        # The switches' view: each switch on the tree forwarded the n datagrams once, s5 holds
        # no flow for the group.
        for s in ("s1", "s2", "s3", "s4"):
            self.assertEqual(self.group_flow_packets(s, group), n, (s, self.flows(s)))
        self.assertIsNone(self.group_flow_packets("s5", group), self.flows("s5"))
        self.assertNotIn("type=all", self.groups("s5"))
        for p, _ in subs:
            p.terminate()
            p.wait(10)
        for h, p in self.proxy.items():
            self.assertEqual(p.stop(), 0, p.log()[-2000:])
        self.assertEqual(self.proxy["h1"].final_counters().get("m2m_publish_out"), n)
        for h in ("h3", "h5"):
            self.assertEqual(self.proxy[h].final_counters().get("m2m_publish_in"), n)


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", default=os.path.join(os.path.dirname(HERE), "build", "mqtt_proxy"))
    ap.add_argument("--artifacts", default=os.path.join(os.path.dirname(HERE), "build",
                                                        "m2m-artifacts"))
    ap.add_argument("-k", dest="pattern", default=None, help="run only tests matching this")
    base = ap.parse_args()
    suite_result = 0
    for case in (Reference, OneDatagram):
        # Each case its own artifacts (run_suite empties the directory it is given).
        ARGS = argparse.Namespace(**vars(base))
        ARGS.artifacts = os.path.join(base.artifacts, case.__name__)
        if ARGS.pattern and not any(ARGS.pattern in n for n in unittest.TestLoader()
                                    .getTestCaseNames(case)):
            continue
        rc = procs.run_suite("m2m." + case.__name__, case, ARGS, testbed is not None)
        if rc == procs.SKIP:
            return rc
        suite_result = suite_result or rc
    return suite_result


if __name__ == "__main__":
    sys.exit(main())
