#!/usr/bin/python3
"""The NFQUEUE delay element (mininet/delay.py, build/mqtt_proxy_delay) in the reference testbed.

The tree of depth 2 and fanout 2 (h1, h2 on s2; h3, h4 on s3) without link delays; elements run
on h1 and h3, on what they receive (the default) and, once, on what they send. Each delay is
measured with ping: the median round trip of a few echoes, less the median measured just before
without elements, must be the two one-way delays (h1 -> h3 and h3 -> h1) within 10%, at 10, 100
and 1000 ms one-way. A pair of hosts without elements, and an address an element has no entry
for, keep their round trip. The element's bound drops and counts what exceeds it; a missing
binary and a queue that another program holds give a DelayError that says so; stopping removes
the rule and lets what is held go. TCP keeps its throughput through a delayed ingress.

Also, without root or Mininet: tree_path_delays over a hand-made net (--offline runs only those).

Exit status 77 (ctest: skipped) when not root or when Mininet / Open vSwitch are missing.
"""

import argparse
import collections
import os
import re
import shutil
import statistics
import sys
import time
import unittest

import delay  # this script's directory is first on sys.path
import procs

try:
    import testbed
except ImportError:  # Mininet imports only in Debian's /usr/bin/python3: main() skips
    testbed = None

HERE = os.path.dirname(os.path.abspath(__file__))
ARGS = None
TOLERANCE = 0.10  # of the delay added
UNAFFECTED_MS = 2.0  # a round trip without delay may move this much (the switches' jitter)
PINGS = 5
IP = {"h%d" % i: "192.168.1.%d" % (100 + i) for i in range(1, 5)}
SUMMARY = re.compile(r"min/avg/max/mdev = ([0-9.]+)/")


class TreePaths(unittest.TestCase):
    """tree_path_delays over a stand-in for a Mininet net: the reference tree and a chain."""

    Node = collections.namedtuple("Node", "name ip")

    class Net:
        def __init__(self, edges, hosts):
            node = {}
            for n in {x for e in edges for x in e}:
                node[n] = TreePaths.Node(n, IP.get(n))
            self.hosts = [_Host(node[h]) for h in hosts]
            self.switches = [node[n] for n in node if n not in hosts]
            self.links = [_Link(node[a], node[b]) for a, b in edges]

    def test_reference_tree(self):
        net = self.Net([("s1", "s2"), ("s1", "s3"), ("s2", "h1"), ("s2", "h2"), ("s3", "h3"),
                        ("s3", "h4")], ["h1", "h2", "h3", "h4"])
        paths = delay.tree_path_delays(net, 2.5, 10)
        self.assertEqual(paths["h1"], {IP["h2"]: 5.0, IP["h3"]: 25.0, IP["h4"]: 25.0})
        self.assertEqual(paths["h4"], {IP["h1"]: 25.0, IP["h2"]: 25.0, IP["h3"]: 5.0})
        self.assertEqual(delay.tree_path_delays(net, 0.1, 0.2)["h1"][IP["h3"]], 0.6)

    def test_no_path_crosses_a_host(self):
        # h2 sits between s1 and s2 (two interfaces) but forwards nothing: h1 cannot reach h3.
        net = self.Net([("h1", "s1"), ("s1", "h2"), ("h2", "s2"), ("s2", "h3")],
                       ["h1", "h2", "h3"])
        paths = delay.tree_path_delays(net, 1, 1)
        self.assertEqual(paths["h1"], {IP["h2"]: 2.0})
        self.assertEqual(paths["h2"], {IP["h1"]: 2.0, IP["h3"]: 2.0})
        self.assertEqual(paths["h3"], {IP["h2"]: 2.0})

    def test_describe_and_ms_text(self):
        self.assertIn("NFQUEUE", delay.describe("nfqueue", 5, 10))
        self.assertIn("netem", delay.describe("netem", 5, 10))
        self.assertEqual(delay.describe("none", 0, 0), "link delay: none")
        with self.assertRaises(ValueError):
            delay.describe("tbf", 1, 1)
        self.assertEqual([delay.ms_text(v) for v in (0, 10, 2.5, 0.1 + 0.2, 1e-7)],
                         ["0", "10", "2.5", "0.3", "0"])
        with self.assertRaises(ValueError):
            delay.ms_text(-1)

    def test_netem_probe_answers(self):
        self.assertIn(delay.netem_available(), (True, False))


class _Host:
    def __init__(self, node):
        self.name = node.name
        self._ip = node.ip

    def IP(self):  # pylint: disable=invalid-name  (Mininet's name)
        return self._ip


class _Intf:
    def __init__(self, node):
        self.node = node


class _Link:
    def __init__(self, a, b):
        self.intf1, self.intf2 = _Intf(a), _Intf(b)


class Delay(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tb = testbed.Testbed(ARGS.artifacts, depth=2, fanout=2)
        cls.tb.start()
        cls.elements = []
        try:
            # For the pairs that must stay as they are; the delayed pair's baseline is measured
            # again just before each delay.
            cls.baseline = {pair: cls.median_rtt(*pair)
                            for pair in (("h1", "h3"), ("h2", "h4"), ("h2", "h1"))}
            print("baseline RTT (median of %d): %s" % (
                PINGS, ", ".join("%s->%s %.3f ms" % (a, b, v)
                                 for (a, b), v in sorted(cls.baseline.items()))))
        except BaseException:
            cls.tb.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        for e in cls.elements:
            e.stop()
        cls.tb.stop()

    # -- helpers -------------------------------------------------------------------------------

    @classmethod
    def rtts(cls, src, dst, count=PINGS, interval=0.2, wait=5):
        """`count` round trips from `src` to `dst`, in ms, one echo every `interval` s. Each echo
        is its own ping process: ping prints a reply's time to three digits only (2002 ms), its
        summary to the microsecond. -U: the time from user to user; by default ping takes the
        reply's arrival from the kernel's receive timestamp, which is taken before an ingress
        element holds the packet."""
        pings = []
        for i in range(count):
            if i:
                time.sleep(interval)
            pings.append(cls.tb.popen(src, ["ping", "-n", "-q", "-U", "-c", "1", "-W",
                                            str(wait), IP[dst]]))
        times = []
        for p in pings:
            out, err = p.communicate(timeout=wait + 10)
            m = SUMMARY.search(out.decode(errors="replace"))
            if p.returncode != 0 or not m:
                raise AssertionError("ping %s -> %s: rc=%s %s %s" % (src, dst, p.returncode,
                                                                   out, err))
            times.append(float(m.group(1)))
        return times

    @classmethod
    def replies(cls, src, dst, count, interval, wait):
        """How many of `count` echoes sent `interval` s apart come back within `wait` s."""
        _, out, _ = cls.tb.run(src, ["ping", "-n", "-q", "-c", str(count), "-i", str(interval),
                                     "-W", str(wait), IP[dst]], timeout=60)
        m = re.search(r"(\d+) received", out)
        if not m:
            raise AssertionError("ping %s -> %s: %s" % (src, dst, out))
        return int(m.group(1))

    @classmethod
    def median_rtt(cls, src, dst):
        return statistics.median(cls.rtts(src, dst))

    @classmethod
    def element(cls, host, table, default_ms=0, queue=0, binary=None, **kwargs):
        e = delay.DelayElement(cls.tb.host(host), "%s-eth0" % host, table, default_ms, queue,
                               binary or ARGS.binary,
                               os.path.join(ARGS.artifacts, "delay-%s-%d.log" % (host, queue)),
                               **kwargs)
        cls.elements.append(e)
        return e

    def stop_all(self):
        counters = []
        for e in self.elements:
            c = e.stop()
            if c is not None:
                print("%s element: %d packets, released late by %d us on average, %d us at most"
                      % (e.node.name, c["packets"], c["late_mean_us"], c["late_max_us"]))
            counters.append(c)
        self.elements.clear()
        return counters

    def rules(self, host):
        _, out, _ = self.tb.run(host, ["iptables", "-w", "5", "-t", "mangle", "-S"])
        return [line for line in out.splitlines() if delay.RULE_COMMENT in line]

    def added(self, src, dst, baseline=None):
        times = self.rtts(src, dst)
        if ARGS.verbose:
            print("  %s -> %s RTTs: %s ms" % (src, dst, " ".join("%.3f" % t for t in times)))
        if baseline is None:
            baseline = self.baseline[(src, dst)]
        return statistics.median(times) - baseline

    def assert_added(self, src, dst, want_ms, baseline):
        got = self.added(src, dst, baseline)
        print("%s -> %s: %.3f ms added to %.3f ms, want %.1f ms (%+.2f%%)"
              % (src, dst, got, baseline, want_ms, 100.0 * (got - want_ms) / want_ms))
        self.assertLessEqual(abs(got - want_ms), TOLERANCE * want_ms,
                             "%s -> %s: %.3f ms added, want %.1f +-10%%" % (src, dst, got, want_ms))

    def assert_unaffected(self, src, dst):
        got = self.added(src, dst)
        print("%s -> %s: %.3f ms added (no delay there)" % (src, dst, got))
        self.assertLessEqual(abs(got), UNAFFECTED_MS, "%s -> %s moved by %.3f ms" % (src, dst, got))

    # -- tests ---------------------------------------------------------------------------------

    def test_1_path_delays_of_the_testbed(self):
        paths = delay.tree_path_delays(self.tb.net, 2.5, 2.5)
        self.assertEqual(paths["h1"], {IP["h2"]: 5.0, IP["h3"]: 10.0, IP["h4"]: 10.0})
        self.assertEqual(paths["h3"], {IP["h1"]: 10.0, IP["h2"]: 10.0, IP["h4"]: 5.0})

    def test_2_delay_10ms_from_path_sums(self):
        # Host links 2.5 ms and switch links 2.5 ms: h1 -> h3 crosses four links, 10 ms.
        paths = delay.tree_path_delays(self.tb.net, 2.5, 2.5)
        baseline = self.median_rtt("h1", "h3")  # just before: the switches' latency drifts
        self.element("h1", paths["h1"]).start()
        self.element("h3", paths["h3"]).start()
        try:
            self.assert_added("h1", "h3", 20.0, baseline)
            self.assert_unaffected("h2", "h4")
        finally:
            counters = self.stop_all()
        for c in counters:
            self.assertGreaterEqual(c["packets"], PINGS)
            self.assertEqual(c["overflowed"], 0)
            self.assertEqual(c["released"], c["packets"])

    def test_3_delay_100ms(self):
        self.one_way(100.0)

    def test_3_delay_100ms_egress(self):
        self.one_way(100.0, direction="egress")

    def test_4_delay_1000ms(self):
        self.one_way(1000.0)

    def one_way(self, ms, direction="ingress"):
        baseline = self.median_rtt("h1", "h3")
        self.element("h1", {IP["h3"]: ms}, direction=direction).start()
        self.element("h3", {IP["h1"]: ms}, direction=direction).start()
        try:
            self.assert_added("h1", "h3", 2 * ms, baseline)
            self.assert_unaffected("h2", "h4")
            # h2's echoes to h1 (ingress) and h1's replies (egress) go through h1's element too,
            # but it has no entry for h2.
            self.assert_unaffected("h2", "h1")
        finally:
            counters = self.stop_all()
        self.assertTrue(all(c["overflowed"] == 0 for c in counters), counters)

    def test_5_bound_drops_and_counts(self):
        # Ten echoes 10 ms apart toward a 300 ms delay, at most 3 held: 3 get through.
        e = self.element("h1", {IP["h3"]: 300}, max_packets=3, direction="egress").start()
        try:
            received = self.replies("h1", "h3", count=10, interval=0.01, wait=3)
        finally:
            counters = e.stop()
            self.elements.clear()
        self.assertEqual(received, 3, counters)
        self.assertEqual(counters["overflowed"], 7, counters)
        self.assertEqual(counters["max_held"], 3, counters)

    def test_6_stop_removes_the_rule_and_releases_what_is_held(self):
        e = self.element("h2", {IP["h4"]: 1000}, direction="egress").start()
        self.assertEqual(len(self.rules("h2")), 1, self.rules("h2"))
        # An echo sent now is held for a second; stopping lets it go at once.
        ping = self.tb.popen("h2", ["ping", "-n", "-q", "-c", "1", "-W", "5", IP["h4"]])
        time.sleep(0.3)
        counters = e.stop()
        self.elements.clear()
        out, _ = ping.communicate(timeout=10)
        self.assertEqual(ping.returncode, 0, out)
        rtt = float(SUMMARY.search(out.decode()).group(1))
        self.assertLess(rtt, 900, "the held echo waited its full delay: %s" % out)
        self.assertEqual(counters["released"], counters["packets"], counters)
        self.assertGreaterEqual(counters["flushed"], 1, counters)
        self.assertEqual(self.rules("h2"), [])

    def test_7_missing_binary_is_a_clear_error(self):
        e = self.element("h1", {}, binary=os.path.join(ARGS.artifacts, "no-such-binary"))
        with self.assertRaisesRegex(delay.DelayError, "delay element .* is not built"):
            e.start()
        self.elements.clear()
        self.assertEqual(self.rules("h1"), [])

    def test_8_queue_held_by_another_is_a_clear_error(self):
        first = self.element("h4", {}, queue=7).start()
        second = self.element("h4", {}, queue=7)
        with self.assertRaisesRegex(delay.DelayError,
                                    "did not start: .*cannot bind NFQUEUE queue 7"):
            second.start()
        self.assertEqual(len(self.rules("h4")), 1)
        first.stop()
        self.elements.clear()
        self.assertEqual(self.rules("h4"), [])
        self.assert_unaffected("h2", "h4")  # no rule left that would drop h4's replies


    def test_9_tcp_keeps_its_throughput_through_ingress(self):
        # A held packet belongs to no socket on the way in, so TCP is not throttled as it is
        # through an egress element (TCP Small Queues, docs/testbed-delay.md): 10 ms one-way on
        # the data, then the same transfer undelayed.
        e = self.element("h3", {IP["h1"]: 10}).start()
        try:
            delayed = self.tcp_mb_per_s("h1", "h3")
        finally:
            self.stop_all()
        plain = self.tcp_mb_per_s("h1", "h3")
        print("TCP h1 -> h3: %.1f MB/s with 10 ms one-way at h3's ingress, %.1f MB/s without"
              % (delayed, plain))
        self.assertGreaterEqual(delayed, 0.25 * plain)

    def tcp_mb_per_s(self, src, dst, seconds=2):
        server = self.tb.popen(dst, ["/usr/bin/python3", "-c", TCP_SINK])
        self.assertEqual(server.stdout.readline().strip(), b"listening")
        rc, _, err = self.tb.run(src, ["/usr/bin/python3", "-c", TCP_SOURCE % (IP[dst],
                                                                             seconds)], timeout=30)
        out, _ = server.communicate(timeout=30)
        self.assertEqual(rc, 0, err)
        return float(out)


# A TCP sink that prints the rate it received at, from its first byte on, and a source that sends
# for a number of seconds.
TCP_SINK = """import socket, sys, time
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", 5001)); l.listen(1); print("listening", flush=True)
c, _ = l.accept(); n = 0; t = None
while True:
    b = c.recv(1 << 20)
    if not b:
        break
    t = t or time.monotonic(); n += len(b)
print("%.3f" % (n / (time.monotonic() - t) / 1e6))
"""
TCP_SOURCE = """import socket, time
s = socket.create_connection(("%s", 5001)); b = b"x" * 65536; end = time.monotonic() + %d
while time.monotonic() < end:
    s.sendall(b)
s.close()
"""


def run_offline():
    suite = unittest.TestLoader().loadTestsFromTestCase(TreePaths)
    return unittest.TextTestRunner(verbosity=2 if ARGS.offline else 1,
                                   stream=sys.stdout).run(suite).wasSuccessful()


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default=os.path.join(os.path.dirname(HERE), "build",
                                                     "mqtt_proxy_delay"))
    ap.add_argument("--artifacts", default=os.path.join(os.path.dirname(HERE), "build",
                                                        "delay-artifacts"))
    ap.add_argument("--offline", action="store_true",
                    help="run only the tests that need neither root nor Mininet")
    ap.add_argument("-v", dest="verbose", action="store_true", help="print every round trip")
    ap.add_argument("-k", dest="pattern", default=None, help="run only tests matching this")
    ARGS = ap.parse_args()
    if not run_offline():
        return 1
    if ARGS.offline:
        return 0
    if shutil.which("ping") is None:
        print("delay: skipped: ping is missing (iputils-ping, scripts/setup.sh)", file=sys.stderr)
        return procs.SKIP
    ARGS.proxy = ARGS.binary  # what run_suite checks is built
    return procs.run_suite("delay", Delay, ARGS, testbed is not None)


if __name__ == "__main__":
    sys.exit(main())
