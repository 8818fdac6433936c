#!/usr/bin/python3
"""End-to-end tests of mqtt_proxy in the reference Mininet testbed, with stock clients.

Proxies run on h1 and h4, each naming the other as its peer; subscribers are on h2 (via h1), publishers
on h3 (via h4) unless a test says otherwise. tcpdump records h1-eth0 and h4-eth0 for the whole run, so
tests can check which datagrams crossed between the proxies. On failure the proxies' logs and the pcaps
stay in the artifacts directory.

Exit status 77 (ctest: skipped) when not root or when Mininet / Open vSwitch are missing.
"""

import argparse
import os
import queue
import signal
import subprocess
import sys
import time
import unittest

import pcapread  # this script's directory is first on sys.path
import procs
from procs import Lines

try:
    import testbed
except ImportError:  # Mininet imports only in Debian's /usr/bin/python3: main() skips
    testbed = None
else:
    H1, H2, H3, H4 = (testbed.host_ip(i) for i in (1, 2, 3, 4))

HERE = os.path.dirname(os.path.abspath(__file__))
ARGS = None


class EndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tb = testbed.Testbed(ARGS.artifacts, proxy_binary=ARGS.proxy)
        cls.tb.start()
        try:
            cls.cap_h1 = cls.tb.capture("h1")
            cls.cap_h4 = cls.tb.capture("h4")
            debug = ["--log-level", "debug"]
            cls.h1 = cls.tb.start_proxy("h1", peers=[H4], extra=debug)
            cls.h4 = cls.tb.start_proxy("h4", peers=[H1], extra=debug)
        except BaseException:
            cls.tb.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.tb.stop()

    # -- helpers -------------------------------------------------------------------------------

    def auth(self, password=None):
        return ["-u", testbed.USER, "-P", password or testbed.PASSWORD]

    def subscriber(self, host, broker, topics, count, keepalive=60):
        args = ["mosquitto_sub", "-h", broker, "-k", str(keepalive), "-v", "-C", str(count),
                "-W", "60"] + self.auth()
        for t in topics:
            args += ["-t", t]
        p = self.tb.popen(host, args)
        return p, Lines(p.stdout)

    def publish(self, host, broker, topic, message=None, lines=None, qos=0, timeout=30):
        args = ["mosquitto_pub", "-h", broker, "-t", topic, "-q", str(qos)] + self.auth()
        if lines is not None:
            args.append("-l")
            rc, out, err = self.tb.run(host, args, timeout, input_text="\n".join(lines) + "\n")
        else:
            rc, out, err = self.tb.run(host, args + ["-m", message], timeout)
        self.assertEqual(rc, 0, "mosquitto_pub failed: %s %s" % (out, err))

    def wait_peer_interest(self, proxy, topic, subscribed=True, count=1, timeout=10):
        """Waits until `proxy` logged the `count`-th peer (UN)SUBSCRIBE for `topic`."""
        ok = proxy.wait_peer_interest(topic, subscribed, count, timeout)
        self.assertTrue(ok, "%s never saw the peer's %s %s" % (
            proxy.host.name, "SUBSCRIBE" if subscribed else "UNSUBSCRIBE", topic))

    def packets(self, capture, src, dst, kind, topic):
        """How many packets of `kind` about `topic` went from src to dst, in datagrams of one packet
        or batches of many."""
        return pcapread.count_packets(capture.path)[0][(src, dst, kind, topic)]

    def received(self, lines, n, timeout=20):
        return [lines.next(timeout) for _ in range(n)]

    def captured(self, capture, src, dst, kind, topic, timeout=10):
        """Waits until a packet of `kind` about `topic` from src to dst is in the capture: then
        every datagram that crossed the interface before it is in the file too."""
        ok = procs.wait_for(lambda: self.packets(capture, src, dst, kind, topic) > 0, timeout)
        self.assertTrue(ok, "no %s %s from %s to %s in %s" % (kind, topic, src, dst, capture.path))

    def sentinel(self, topic, lines, expect):
        """Ends a check that something does not arrive; returns the lines `lines` printed before
        the sentinel.

        Publishes "sentinel" on `topic` from h3 via h4, after whatever must not arrive; a subscriber
        of `topic` via h1 (whose interest h4 has) prints `expect` for it. The sentinel takes the
        same route, and every hop is in order: h4 handles its client's segments in turn and sends
        datagrams to h1 in turn, h1 writes to each client's connection in turn. So once the
        sentinel arrived, and its datagram is in both captures, anything that was going to arrive
        has, and any datagram that was going to cross h4-eth0 or h1-eth0 is in the pcaps."""
        self.publish("h3", H4, topic, "sentinel")
        before = []
        while True:
            line = lines.next(20)
            if line == expect:
                break
            before.append(line)
        self.captured(self.cap_h4, H4, H1, "PUBLISH", topic)
        self.captured(self.cap_h1, H4, H1, "PUBLISH", topic)
        return before

    # -- tests -----------------------------------------------------------------------------------

    def test_01_hundred_messages_cross_the_proxies_in_order(self):
        sub, lines = self.subscriber("h2", H1, ["e2e/order"], 100)
        self.wait_peer_interest(self.h4, "e2e/order")
        msgs = ["msg-%03d" % i for i in range(100)]
        self.publish("h3", H4, "e2e/order", lines=msgs)  # one connection, 100 PUBLISH packets
        got = self.received(lines, 100)
        self.assertEqual(got, ["e2e/order " + m for m in msgs])
        self.assertEqual(sub.wait(10), 0)
        self.assertEqual(self.packets(self.cap_h4, H4, H1, "PUBLISH", "e2e/order"), 100)

    def test_02_same_proxy_delivery_stays_local(self):
        sub, lines = self.subscriber("h2", H1, ["e2e/local"], 3)
        self.wait_peer_interest(self.h4, "e2e/local")  # h1 announced it; h4 never subscribes back
        for i in range(3):
            self.publish("h2", H1, "e2e/local", "local-%d" % i)
        self.assertEqual(self.received(lines, 3), ["e2e/local local-%d" % i for i in range(3)])
        # The subscriber leaves after its third message: h1 tells h4 after anything it forwarded.
        self.assertEqual(sub.wait(10), 0)
        self.captured(self.cap_h1, H1, H4, "UNSUBSCRIBE", "e2e/local")
        self.assertEqual(self.packets(self.cap_h1, H1, H4, "PUBLISH", "e2e/local"), 0)

    def test_03_wildcard_subscriptions(self):
        sub, lines = self.subscriber("h2", H1, ["e2e/wild/+/temp", "e2e/hash/#"], 3)
        self.wait_peer_interest(self.h4, "e2e/wild/+/temp")
        self.wait_peer_interest(self.h4, "e2e/hash/#")
        self.publish("h3", H4, "e2e/wild/kitchen/humidity", "no")  # must not arrive
        self.publish("h3", H4, "e2e/wild/kitchen/temp", "t1")
        self.publish("h3", H4, "e2e/hash", "h0")  # '#' matches the parent level too
        self.publish("h3", H4, "e2e/hash/a/b", "h2")
        self.assertEqual(self.received(lines, 3),
                         ["e2e/wild/kitchen/temp t1", "e2e/hash h0", "e2e/hash/a/b h2"])
        self.captured(self.cap_h4, H4, H1, "PUBLISH", "e2e/hash/a/b")  # published after it
        self.assertEqual(self.packets(self.cap_h4, H4, H1, "PUBLISH", "e2e/wild/kitchen/humidity"),
                         0)

    def test_04_wrong_password_is_refused(self):
        args = ["mosquitto_pub", "-h", H4, "-t", "e2e/x", "-m", "x"] + self.auth("wrong")
        rc, out, err = self.tb.run("h3", args)
        self.assertNotEqual(rc, 0)
        self.assertIn("not authori", (out + err).lower())
        rc, out, err = self.tb.run("h2", ["mosquitto_sub", "-h", H1, "-t", "e2e/x", "-C", "1",
                                          "-W", "5", "-u", "nobody", "-P", "nothing"])
        self.assertNotEqual(rc, 0)
        self.assertIn("not authori", (out + err).lower())

    def test_05_paho_unsubscribe_stops_publish_datagrams(self):
        p, lines, command = self.paho("h2", H1, "paho-unsub")
        command("sub e2e/unsub")
        self.assertEqual(lines.expect("SUBACK"), "SUBACK 0")
        command("sub e2e/unsub-sentinel")  # kept: it ends the check after the UNSUBSCRIBE
        self.assertEqual(lines.expect("SUBACK"), "SUBACK 0")
        self.wait_peer_interest(self.h4, "e2e/unsub")
        self.wait_peer_interest(self.h4, "e2e/unsub-sentinel")
        self.publish("h3", H4, "e2e/unsub", "before")
        self.assertEqual(lines.expect("MSG"), "MSG e2e/unsub before")
        command("unsub e2e/unsub")
        lines.expect("UNSUBACK")
        self.wait_peer_interest(self.h4, "e2e/unsub", subscribed=False)
        for i in range(3):
            self.publish("h3", H4, "e2e/unsub", "after-%d" % i)
        late = self.sentinel("e2e/unsub-sentinel", lines, "MSG e2e/unsub-sentinel sentinel")
        self.assertEqual(late, [], "messages after UNSUBSCRIBE: %s" % late)
        self.assertEqual(self.packets(self.cap_h4, H4, H1, "PUBLISH", "e2e/unsub"), 1)
        self.assertEqual(self.packets(self.cap_h1, H1, H4, "UNSUBSCRIBE", "e2e/unsub"), 1)
        command("quit")
        self.assertEqual(p.wait(10), 0)

    def paho(self, host, broker, client_id, keepalive=60, persistent=False,
             connack="CONNACK 0", extra=()):
        """A Paho client process driven by commands; returns (process, lines, send)."""
        p = self.tb.popen(host, ["/usr/bin/python3", os.path.join(HERE, "clients", "paho_client.py"),
                                 "--host", broker, "--user", testbed.USER, "--password",
                                 testbed.PASSWORD, "--id", client_id, "--keepalive",
                                 str(keepalive)] + (["--persistent"] if persistent else []) +
                          list(extra), stdin=subprocess.PIPE)
        lines = Lines(p.stdout)

        def command(c):
            p.stdin.write((c + "\n").encode())
            p.stdin.flush()

        self.assertEqual(lines.expect("CONNACK"), connack)
        return p, lines, command

    def test_06_subscriber_gone_silently_loses_interest_after_keepalive(self):
        # The subscriber's host drops its own packets, then the subscriber is killed: no DISCONNECT,
        # no FIN reaches the proxy. Only keepalive expiry (1.5 x 2 s) can notice.
        # h2 is cut off below: the subscriber of the sentinel is on h3.
        watcher, watcher_lines = self.subscriber("h3", H1, ["e2e/ka-sentinel"], 1)
        self.wait_peer_interest(self.h4, "e2e/ka-sentinel")
        sub, lines, command = self.paho("h2", H1, "paho-keepalive", keepalive=2)
        command("sub e2e/ka")
        self.assertEqual(lines.expect("SUBACK"), "SUBACK 0")
        self.wait_peer_interest(self.h4, "e2e/ka")
        self.publish("h3", H4, "e2e/ka", "alive")
        self.assertEqual(lines.expect("MSG"), "MSG e2e/ka alive")
        block = ["iptables", "-I", "OUTPUT", "-p", "tcp", "--dport", "1883", "-j", "DROP"]
        self.assertEqual(self.tb.run("h2", block)[0], 0)
        try:
            started = time.monotonic()
            sub.send_signal(signal.SIGKILL)
            sub.wait(5)
            self.wait_peer_interest(self.h4, "e2e/ka", subscribed=False, timeout=10)
            elapsed = time.monotonic() - started
            self.assertIn("id=paho-keepalive: keepalive expired", self.h1.log())
            self.assertLess(elapsed, 4.5)  # expiry 3 s after the last packet, at the latest
            self.publish("h3", H4, "e2e/ka", "gone")
            self.sentinel("e2e/ka-sentinel", watcher_lines, "e2e/ka-sentinel sentinel")
            self.assertEqual(self.packets(self.cap_h4, H4, H1, "PUBLISH", "e2e/ka"), 1)
            self.assertEqual(watcher.wait(10), 0)
        finally:
            block[1] = "-D"
            self.tb.run("h2", block)

    def test_07_killed_subscriber_loses_interest_at_once(self):
        sub, lines = self.subscriber("h2", H1, ["e2e/kill"], 10)
        self.wait_peer_interest(self.h4, "e2e/kill")
        sub.send_signal(signal.SIGKILL)  # the kernel still closes the socket: a FIN
        sub.wait(5)
        self.wait_peer_interest(self.h4, "e2e/kill", subscribed=False, timeout=5)

    def test_08_qos1_and_qos2_publish_complete(self):
        sub, lines = self.subscriber("h2", H1, ["e2e/qos"], 2)
        self.wait_peer_interest(self.h4, "e2e/qos")
        self.publish("h3", H4, "e2e/qos", "q1", qos=1, timeout=10)  # waits for PUBACK
        self.publish("h3", H4, "e2e/qos", "q2", qos=2, timeout=10)  # PUBREC/PUBREL/PUBCOMP
        self.assertEqual(self.received(lines, 2), ["e2e/qos q1", "e2e/qos q2"])

    def test_09_large_message_spans_many_segments(self):
        sub, lines = self.subscriber("h2", H1, ["e2e/big"], 1)
        self.wait_peer_interest(self.h4, "e2e/big")
        payload = "".join(chr(ord("a") + i % 26) for i in range(30000))  # ~21 MSS-sized segments
        self.publish("h3", H1, "e2e/big", payload)  # same proxy: larger than a UDP datagram allows
        self.assertEqual(lines.next(20), "e2e/big " + payload)

    def test_10_thousand_messages_through_five_percent_loss(self):
        loss = procs.LossRules(self.tb, ["h2", "h3"], 0.05)
        try:
            sub, lines = self.subscriber("h2", H1, ["e2e/loss"], 1000)
            self.wait_peer_interest(self.h4, "e2e/loss")
            msgs = ["loss-%04d" % i for i in range(1000)]
            self.publish("h3", H4, "e2e/loss", lines=msgs, timeout=120)
            got = self.received(lines, 1000, timeout=60)
            self.assertEqual(got, ["e2e/loss " + m for m in msgs])  # none lost, none doubled
            self.assertEqual(sub.wait(10), 0)
        finally:
            loss.remove()

    def test_11_thousand_concurrent_clients_each_get_the_message(self):
        n = 1000
        p = self.tb.popen("h2", ["/usr/bin/python3", os.path.join(HERE, "clients", "many_clients.py"),
                                 "--host", H1, "--count", str(n), "--topic", "e2e/many",
                                 "--sentinel", "e2e/many-sentinel",
                                 "--user", testbed.USER,
                                 "--password", testbed.PASSWORD, "--timeout", "60"])
        lines = Lines(p.stdout)
        ready = lines.next(90)
        self.assertTrue(ready.startswith("ready %d" % n), ready)
        self.wait_peer_interest(self.h4, "e2e/many")
        self.wait_peer_interest(self.h4, "e2e/many-sentinel")
        self.publish("h3", H4, "e2e/many", "to all")
        self.publish("h3", H4, "e2e/many-sentinel", "sentinel")  # no copy of "to all" after it
        self.assertEqual(lines.next(70), "received %d duplicates 0" % n)
        self.assertEqual(p.wait(30), 0)

    def test_12_message_retained_on_h4_reaches_a_later_subscriber_on_h1(self):
        args = ["mosquitto_pub", "-h", H4, "-t", "e2e/retained/dev", "-m", "kept", "-r"]
        rc, out, err = self.tb.run("h3", args + self.auth())
        self.assertEqual(rc, 0, out + err)
        # Subscribed only now: h1 asks h4, h4 answers with its retained message.
        p = self.tb.popen("h2", ["mosquitto_sub", "-h", H1, "-t", "e2e/retained/+", "-C", "1",
                                 "-W", "20", "-F", "%r %t %p"] + self.auth())
        lines = Lines(p.stdout)
        self.assertEqual(lines.next(20), "1 e2e/retained/dev kept")  # retain flag set
        self.assertEqual(p.wait(10), 0)
        # Cleared at the source with an empty retained message: a new subscriber gets nothing.
        rc, out, err = self.tb.run("h3", ["mosquitto_pub", "-h", H4, "-t", "e2e/retained/dev",
                                          "-n", "-r"] + self.auth())
        self.assertEqual(rc, 0, out + err)
        self.assertTrue(self.h4.wait_log("retained message cleared topic=e2e/retained/dev"))
        self.wait_peer_interest(self.h4, "e2e/retained/+", subscribed=False)  # the first one left
        # h4 answers h1's SUBSCRIBE with what it retains before it reads the sentinel.
        sub, lines = self.subscriber("h2", H1, ["e2e/retained/+"], 2)
        self.wait_peer_interest(self.h4, "e2e/retained/+", count=2)
        out = self.sentinel("e2e/retained/sentinel", lines, "e2e/retained/sentinel sentinel")
        self.assertEqual(out, [])
        sub.kill()
        sub.wait(5)

    def test_13_persistent_session_resumes_its_subscription(self):
        p, lines, command = self.paho("h2", H1, "e2e-persist", persistent=True)
        command("sub e2e/persist")
        self.assertEqual(lines.expect("SUBACK"), "SUBACK 0")
        command("quit")  # DISCONNECT: a clean-session-0 session is kept
        self.assertEqual(p.wait(10), 0)
        self.wait_peer_interest(self.h4, "e2e/persist", subscribed=False)
        # Back without subscribing: the stored subscription is restored and the peer told again.
        p, lines, command = self.paho("h2", H1, "e2e-persist", persistent=True,
                                      connack="CONNACK 0 session-present")
        self.wait_peer_interest(self.h4, "e2e/persist", count=2)
        self.publish("h3", H4, "e2e/persist", "resumed")
        self.assertEqual(lines.expect("MSG"), "MSG e2e/persist resumed")
        command("quit")
        self.assertEqual(p.wait(10), 0)

    def test_14_protocol_versions_and_qos_levels_of_stock_clients(self):
        # Every pairing of 3.1, 3.1.1 and 5.0 clients, across the proxies, at QoS 0, 1 and 2.
        for sub_v in ("31", "311", "5"):
            topic = "e2e/v/%s" % sub_v
            args = ["mosquitto_sub", "-V", sub_v, "-h", H1, "-t", topic, "-C", "9", "-W", "30",
                    "-q", "1"] + self.auth()
            if sub_v == "31":
                args += ["-i", "sub-v31"]  # 3.1 has no server-assigned ids
            sub = self.tb.popen("h2", args)
            lines = Lines(sub.stdout)
            self.wait_peer_interest(self.h4, topic)
            sent = []
            for pub_v in ("31", "311", "5"):
                for qos in ("0", "1", "2"):
                    msg = "from-%s-q%s" % (pub_v, qos)
                    args = ["mosquitto_pub", "-V", pub_v, "-h", H4, "-t", topic, "-q", qos, "-m",
                            msg] + self.auth()
                    if pub_v == "31":
                        args += ["-i", "pub-v31"]
                    rc, out, err = self.tb.run("h3", args, 10)
                    self.assertEqual(rc, 0, "%s: %s %s" % (msg, out, err))
                    sent.append(msg)
            self.assertEqual(self.received(lines, 9), sent, "subscriber -V %s" % sub_v)
            self.assertEqual(sub.wait(10), 0)

    def test_15_v5_will_reaches_a_v5_subscriber_across_peers(self):
        # A v5 will (the subscriber goes without DISCONNECT) reaches a v5 subscriber across peers.
        watcher = self.tb.popen("h2", ["mosquitto_sub", "-V", "5", "-h", H1, "-t", "e2e/v5will",
                                       "-C", "1", "-W", "20"] + self.auth())
        wl = Lines(watcher.stdout)
        self.wait_peer_interest(self.h4, "e2e/v5will")
        dev = self.tb.popen("h3", ["mosquitto_sub", "-V", "5", "-h", H4, "-t", "e2e/none",
                                   "--will-topic", "e2e/v5will", "--will-payload", "gone"] +
                            self.auth())
        self.assertTrue(self.h4.wait_log("topic=e2e/none"))
        dev.send_signal(signal.SIGKILL)  # the kernel closes the socket: FIN, no DISCONNECT
        dev.wait(5)
        self.assertEqual(wl.next(20), "gone")
        self.assertEqual(watcher.wait(10), 0)

    def test_16_paho_c_library_in_311_and_5(self):
        auth = ["--user", testbed.USER, "--password", testbed.PASSWORD]
        for version in ("4", "5"):
            topic = "e2e/pahoc/%s" % version
            sub = self.tb.popen("h2", [ARGS.paho_c, "sub", H1, topic, "6", "--version", version,
                                       "--qos", "1"] + auth)
            lines = Lines(sub.stdout)
            self.assertEqual(lines.next(20), "ready")
            self.wait_peer_interest(self.h4, topic)
            for qos in ("0", "1", "2"):
                rc, out, err = self.tb.run("h3", [ARGS.paho_c, "pub", H4, topic, "2", "--version",
                                                  version, "--qos", qos] + auth, 30)
                self.assertEqual(rc, 0, out + err)
            self.assertEqual(self.received(lines, 6),
                             ["%s msg-%d retained=0" % (topic, i % 2) for i in range(6)])
            self.assertEqual(sub.wait(10), 0)
            # Retained through h4, read through h1 by a new subscriber.
            rc, out, err = self.tb.run("h3", [ARGS.paho_c, "pub", H4, topic + "/r", "1",
                                              "--version", version, "--retain"] + auth, 30)
            self.assertEqual(rc, 0, out + err)
            rc, out, err = self.tb.run("h2", [ARGS.paho_c, "sub", H1, topic + "/r", "1",
                                              "--version", version, "--id", "late"] + auth, 30)
            self.assertEqual(rc, 0, out + err)
            self.assertEqual(out.splitlines()[-1], "%s/r msg-0 retained=1" % topic)

    def test_17_batching_pair_delivers_a_burst_in_fewer_datagrams(self):
        # A second pair of proxies on port 1884 with the batching extension of the peer protocol.
        extra = ["--peer-batch", "--log-level", "debug"]
        h1 = self.tb.start_proxy("h1", peers=[H4], extra=extra, port=1884)
        h4 = self.tb.start_proxy("h4", peers=[H1], extra=extra, port=1884)
        try:
            n = 2000
            p = self.tb.popen("h2", ["mosquitto_sub", "-h", H1, "-p", "1884", "-v", "-t",
                                     "e2e/batch", "-C", str(n), "-W", "60"] + self.auth())
            lines = Lines(p.stdout)
            self.wait_peer_interest(h4, "e2e/batch")
            msgs = ["batch-%04d" % i for i in range(n)]
            rc, out, err = self.tb.run("h3", ["mosquitto_pub", "-h", H4, "-p", "1884", "-t",
                                              "e2e/batch", "-l"] + self.auth(), 60,
                                       input_text="\n".join(msgs) + "\n")
            self.assertEqual(rc, 0, out + err)
            self.assertEqual(self.received(lines, n, timeout=30), ["e2e/batch " + m for m in msgs])
            self.assertEqual(p.wait(10), 0)
        finally:
            for proxy in (h1, h4):
                proxy.stop()
                self.tb.proxies.remove(proxy)
        sent, got = h4.final_counters(), h1.final_counters()
        self.assertEqual(sent.get("peer_publish_out"), n)
        self.assertEqual(got.get("peer_publish_in"), n)
        # mosquitto_pub -l writes its burst many PUBLISHes to a segment: they leave in batches.
        self.assertLess(sent.get("peer_datagrams_out", n), n // 2, sent)
        self.assertEqual(got.get("peer_datagrams_malformed", 0), 0)

    def test_18_fast_publisher_into_a_slow_subscriber_loses_nothing(self):
        # A pair at its defaults (the extension, batching, backpressure) on port 1885, but for a
        # queue limit of 256 KiB per subscriber, a fifth of the burst: dropping at the limit (the
        # policy of --overload drop, and Mosquitto's) would lose most of it. The subscriber reads
        # slowly: mosquitto_sub writes to a pipe the test drains at ~400 KB/s, so it stops
        # reading its socket whenever the pipe is full. mosquitto_pub -l writes as fast as its
        # connection takes: far faster than the subscriber reads.
        extra = ["--max-queued-bytes", "262144"] + ARGS.overload
        h1 = self.tb.start_proxy("h1", peers=[H4], port=1885, extra=extra)
        h4 = self.tb.start_proxy("h4", peers=[H1], port=1885, extra=extra)
        try:
            self.assertTrue(h4.wait_log("speaks the extension"), h4.log()[-2000:])
            n = 20000
            sub = self.tb.popen("h2", ["mosquitto_sub", "-h", H1, "-p", "1885", "-t", "e2e/fast",
                                       "-C", str(n), "-W", "120"] + self.auth())
            self.wait_peer_interest(h4, "e2e/fast")
            msgs = ["fast-%05d-%s" % (i, "x" * 40) for i in range(n)]
            pub = self.tb.popen("h3", ["mosquitto_pub", "-h", H4, "-p", "1885", "-t", "e2e/fast",
                                       "-l"] + self.auth(), stdin=subprocess.PIPE)
            pub.stdin.write(("\n".join(msgs) + "\n").encode())
            pub.stdin.close()
            got = bytearray()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                chunk = os.read(sub.stdout.fileno(), 4096)
                if not chunk:
                    break
                got += chunk
                time.sleep(0.01)
            self.assertEqual(pub.wait(30), 0, pub.stderr.read().decode())
            self.assertEqual(sub.wait(30), 0, sub.stderr.read().decode())
            lines = got.decode().splitlines()
            self.assertEqual(len(lines), n)
            self.assertEqual(lines, msgs)  # every one, once, in order
        finally:
            for proxy in (h1, h4):
                proxy.stop()
                self.tb.proxies.remove(proxy)
        sent, recv = h4.final_counters(), h1.final_counters()
        self.assertEqual(sent.get("peer_publish_out"), n)
        self.assertEqual(recv.get("peer_publish_in"), n)
        for counters in (sent, recv):
            for lost in ("peer_publish_lost", "peer_publish_dropped", "mqtt_publish_dropped_slow"):
                self.assertEqual(counters.get(lost, 0), 0, (lost, counters))
        # The test did overrun the subscriber: a publisher (or the peer h4) was paused.
        self.assertGreater(sent.get("flow_sources_paused", 0) + recv.get("flow_sources_paused", 0),
                           0, (sent, recv))
        # Memory stayed bounded: the proxies' peak RSS is their fixed cost (capture ring, buffers)
        # plus bounded queues, whatever the publisher pushed.
        for proxy in (h1, h4):
            self.assertLess(proxy.peak_rss_kib, 96 * 1024, proxy.host.name)

    def test_19_plain_peer_works_both_ways(self):
        # A proxy on h4 (port 1886) whose only peer is a plain one on h3 (plain_peer.py: one packet
        # per datagram, no extension, the prototype's SUBSCRIBE and UNSUBSCRIBE forms).
        proxy = self.tb.start_proxy("h4", peers=[H3], port=1886)
        try:
            peer = self.tb.popen("h3", [sys.executable, os.path.join(HERE, "clients",
                                                                     "plain_peer.py"),
                                        "--proxy", H4, "--port", "1886", "--subscribe",
                                        "e2e/plain/#", "--expect", "3", "--publish",
                                        "e2e/plain-in", "from-the-plain-peer"])
            self.assertTrue(proxy.wait_log("peer %s SUBSCRIBE topic=e2e/plain/#" % H3),
                            proxy.log()[-2000:])
            sub = self.tb.popen("h2", ["mosquitto_sub", "-h", H4, "-p", "1886", "-t",
                                       "e2e/plain-in", "-C", "1", "-W", "30"] + self.auth())
            self.assertTrue(proxy.wait_log("SUBSCRIBE client=%s" % H2))
            # mosquitto_pub -l: several PUBLISHes in a segment, which a batching sender would pack.
            rc, out, err = self.tb.run("h2", ["mosquitto_pub", "-h", H4, "-p", "1886", "-t",
                                              "e2e/plain/x", "-l"] + self.auth(), 30,
                                       input_text="one\ntwo\nthree\n")
            self.assertEqual(rc, 0, out + err)
            out, err = peer.communicate(timeout=30)
            lines = out.decode().splitlines()
            self.assertEqual(peer.returncode, 0, out.decode() + err.decode())
            self.assertEqual([l for l in lines if l.startswith("PUBLISH")],
                             ["PUBLISH e2e/plain/x one", "PUBLISH e2e/plain/x two",
                              "PUBLISH e2e/plain/x three"])
            self.assertFalse([l for l in lines if l.startswith("EXTRA")], lines)
            out, err = sub.communicate(timeout=30)
            self.assertEqual(out.decode().strip(), "from-the-plain-peer", err.decode())
            self.assertTrue(proxy.wait_log("peer %s UNSUBSCRIBE topic=e2e/plain/#" % H3))
            self.assertFalse(proxy.wait_log("speaks the extension", timeout=0.1))
        finally:
            proxy.stop()
            self.tb.proxies.remove(proxy)
        counters = proxy.final_counters()
        self.assertEqual(counters.get("peer_datagrams_malformed", 0), 0)
        self.assertEqual(counters.get("peer_publish_out"), 3)
        self.assertEqual(counters.get("peer_publish_in"), 1)


        # A third proxy, on h2, with users from mosquitto_passwd and no -u.
        pw = os.path.join(ARGS.artifacts, "passwords")
        rc, out, err = self.tb.run("h2", ["mosquitto_passwd", "-b", "-c", pw, "alice", "s3cret"])
        self.assertEqual(rc, 0, out + err)
        proxy = self.tb.start_proxy("h2", auth=False, extra=["--password-file", pw])
        try:
            alice = ["-u", "alice", "-P", "s3cret"]
            sub = self.tb.popen("h3", ["mosquitto_sub", "-h", H2, "-t", "e2e/pw", "-C", "1",
                                       "-W", "20"] + alice)
            lines = Lines(sub.stdout)
            self.assertTrue(proxy.wait_log("SUBSCRIBE client=%s" % H3))
            rc, out, err = self.tb.run("h3", ["mosquitto_pub", "-h", H2, "-t", "e2e/pw", "-m",
                                              "hashed"] + alice)
            self.assertEqual(rc, 0, out + err)
            self.assertEqual(lines.next(20), "hashed")
            for bad in (["-u", "alice", "-P", "wrong"], []):  # wrong password; anonymous
                rc, _, _ = self.tb.run("h3", ["mosquitto_pub", "-h", H2, "-t", "e2e/pw", "-m",
                                              "x"] + bad)
                self.assertNotEqual(rc, 0)
            self.assertIn("CONNECT refused", proxy.log())
        finally:
            self.assertEqual(proxy.stop(), 0)

    def test_20_killed_proxy_restarts_and_its_peer_resyncs_at_once(self):
        """kill -9 of h4's proxy, then the same command line again: the restarted proxy takes the
        dead one's firewall rule over, and h1, hearing the new run's HELLO, sends it h1's interest
        at once, so h3's messages reach h2 again without the subscriber doing anything."""
        topic = "e2e/restart"
        sub, lines = self.subscriber("h2", H1, [topic], 1000)
        self.wait_peer_interest(self.h4, topic)
        rules = self.tb.raw_prerouting_rules("h4")  # --tcpport's and --ws-port's
        self.assertEqual(len(rules), 2, rules)
        self.assertEqual(sum("--dport 8080" in r for r in rules), 1, rules)
        for rule in rules:
            self.assertIn("mqtt_proxy pid=%d" % self.h4.proc.pid, rule)
        self.assertEqual(self.h4.kill(), -signal.SIGKILL)
        self.assertEqual(self.tb.raw_prerouting_rules("h4"), rules)  # left behind
        restarted_at = time.monotonic()
        type(self).h4 = self.tb.start_proxy("h4", peers=[H1], extra=["--log-level", "debug"],
                                            log_suffix="-restarted")
        new_rules = self.tb.raw_prerouting_rules("h4")
        self.assertEqual(len(new_rules), 2, new_rules)
        for rule in new_rules:
            self.assertIn("mqtt_proxy pid=%d" % self.h4.proc.pid, rule)
        old_pid = int(rules[0].split("pid=")[1].split('"')[0])
        self.assertEqual(self.h4.log().count("removed a leftover of pid %d" % old_pid), 2,
                         self.h4.log())
        # Publish every 50 ms from h3 (one mosquitto_pub connection) until h2 has one.
        pub = self.tb.popen("h3", ["mosquitto_pub", "-h", H4, "-t", topic, "-l"] + self.auth(),
                            stdin=subprocess.PIPE)
        first = None
        try:
            for n in range(200):  # at most 10 s
                pub.stdin.write(b"m%d\n" % n)
                pub.stdin.flush()
                try:
                    line = lines.q.get(timeout=0.05)
                except queue.Empty:
                    continue
                first = time.monotonic() - restarted_at
                self.assertTrue(line.startswith(topic + " m"), line)
                break
        finally:
            pub.stdin.close()
            pub.wait(10)
        self.assertIsNotNone(first, "nothing arrived within 10 s of the restart")
        print("\n  first delivery %.2f s after the restart (the process start)" % first)
        self.assertLess(first, 2.0)
        self.assertIn("peer %s restarted" % H4, self.h1.log())
        sub.kill()

    def test_21_cleanup_removes_leftovers_and_nothing_else(self):
        before = self.tb.raw_prerouting_rules("h3")
        h1_rules = self.tb.raw_prerouting_rules("h1")
        stray = self.tb.start_proxy("h3", extra=[], log_suffix="-stray")
        # One rule for the MQTT port, one for the WebSocket port (--ws-port 8080 by default).
        self.assertEqual(len(self.tb.raw_prerouting_rules("h3")), len(before) + 2)
        stray.kill()
        rc, out, err = self.tb.run("h3", [ARGS.proxy, "--cleanup", "-t", "1883"])
        self.assertEqual(rc, 0, out + err)
        self.assertIn("removed 1 leftover rule(s) for tcp/1883", out)
        self.assertIn("removed 1 leftover rule(s) for tcp/8080", out)
        self.assertEqual(self.tb.raw_prerouting_rules("h3"), before)
        # A running proxy's rule is not a leftover.
        rc, out, err = self.tb.run("h1", [ARGS.proxy, "--cleanup", "-t", "1883", "-i", "h1-eth0"])
        self.assertEqual(rc, 0, out + err)
        self.assertIn("removed 0 leftover rule(s)", out)
        self.assertEqual(self.tb.raw_prerouting_rules("h1"), h1_rules)

    def test_22_qos_1_and_2_and_persistent_sessions_on_one_proxy(self):
        # Between clients of one proxy: delivery at min(publisher's, subscription's QoS), and a
        # persistent session (-c) that gets, in order and at QoS 1, what came while it was away.
        for version in ("311", "5"):
            topic = "e2e/qos/local/%s" % version
            sub = self.tb.popen("h2", ["mosquitto_sub", "-V", version, "-h", H1, "-t", topic,
                                       "-q", "2", "-C", "3", "-W", "30", "-F", "%q %p"] +
                                self.auth())
            lines = Lines(sub.stdout)
            self.assertTrue(self.h1.wait_log("topic=%s qos=2" % topic))
            for qos in (0, 1, 2):
                self.publish("h2", H1, topic, "m%d" % qos, qos=qos, timeout=10)
            self.assertEqual(self.received(lines, 3), ["0 m0", "1 m1", "2 m2"])
            self.assertEqual(sub.wait(10), 0)

            persistent = ["mosquitto_sub", "-V", version, "-h", H1, "-t", topic + "/p", "-q", "1",
                          "-c", "-i", "e2e-persistent-%s" % version] + self.auth()
            if version == "5":
                persistent += ["-x", "600"]  # a v5 session outlives its connection only so
            rc, out, err = self.tb.run("h2", persistent + ["-E"], 15)  # subscribe, then leave
            self.assertEqual(rc, 0, out + err)
            for i in range(3):
                self.publish("h2", H1, topic + "/p", "away-%d" % i, qos=1, timeout=10)
            self.publish("h2", H1, topic + "/p", "qos0-not-queued", qos=0, timeout=10)
            rc, out, err = self.tb.run("h2", persistent + ["-C", "3", "-W", "15", "-F", "%q %p"],
                                       20)
            self.assertEqual(rc, 0, out + err)
            self.assertEqual(out.splitlines(), ["1 away-0", "1 away-1", "1 away-2"])

    def test_23_paho_python_qos_and_a_persistent_session_in_311_and_5(self):
        # Paho (python3-paho-mqtt) subscribes at QoS 2 with a persistent session, leaves, and on
        # its return gets at QoS 1 and 2 what was published meanwhile on its proxy.
        for version in ("311", "5"):
            topic = "e2e/paho-qos/%s" % version
            cid = "paho-qos-%s" % version
            extra = ("--version", version, "--show-qos")
            p, lines, command = self.paho("h2", H1, cid, persistent=True, extra=extra)
            command("sub %s 2" % topic)
            self.assertEqual(lines.expect("SUBACK"), "SUBACK 2")
            self.publish("h2", H1, topic, "live", qos=1, timeout=10)
            self.assertEqual(lines.expect("MSG"), "MSG %s 1 live" % topic)
            command("quit")
            self.assertEqual(p.wait(10), 0)
            self.publish("h2", H1, topic, "away-q1", qos=1, timeout=10)
            self.publish("h2", H1, topic, "away-q2", qos=2, timeout=10)
            p, lines, command = self.paho("h2", H1, cid, persistent=True, extra=extra,
                                          connack="CONNACK 0 session-present")
            self.assertEqual([lines.expect("MSG"), lines.expect("MSG")],
                             ["MSG %s 1 away-q1" % topic, "MSG %s 2 away-q2" % topic])
            command("quit")
            self.assertEqual(p.wait(10), 0)

    def test_24_v5_properties_cross_the_peers(self):
        # Between mqtt_proxies that speak the extension a v5 PUBLISH keeps its properties (DATA5):
        # content type and a user property reach a v5 subscriber behind the other proxy.
        topic = "e2e/v5props"
        sub = self.tb.popen("h2", ["mosquitto_sub", "-V", "5", "-h", H1, "-t", topic, "-C", "1",
                                   "-W", "20", "-F", "%C|%P|%p"] + self.auth())
        lines = Lines(sub.stdout)
        self.wait_peer_interest(self.h4, topic)
        rc, out, err = self.tb.run("h3", ["mosquitto_pub", "-V", "5", "-h", H4, "-t", topic, "-m",
                                          "hello", "-D", "publish", "content-type", "text/plain",
                                          "-D", "publish", "user-property", "site", "h3"] +
                                   self.auth(), 10)
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(lines.next(20), "text/plain|site:h3|hello")
        self.assertEqual(sub.wait(10), 0)

    def test_25_paho_c_gets_the_qos_it_subscribed_to_on_one_proxy(self):
        # Paho C (libpaho-mqtt3c) subscribed at QoS 2 gets QoS 0, 1 and 2 from publishers of
        # those QoS on its own proxy, in 3.1.1 and 5.0.
        auth = ["--user", testbed.USER, "--password", testbed.PASSWORD]
        for version in ("4", "5"):
            topic = "e2e/pahoc-qos/%s" % version
            sub = self.tb.popen("h2", [ARGS.paho_c, "sub", H1, topic, "6", "--version", version,
                                       "--qos", "2", "--show-qos"] + auth)
            lines = Lines(sub.stdout)
            self.assertEqual(lines.next(20), "ready")
            for qos in ("0", "1", "2"):
                rc, out, err = self.tb.run("h2", [ARGS.paho_c, "pub", H1, topic, "2", "--version",
                                                  version, "--qos", qos] + auth, 30)
                self.assertEqual(rc, 0, out + err)
            self.assertEqual(self.received(lines, 6),
                             ["%s msg-%d retained=0 qos=%d" % (topic, i % 2, i // 2)
                              for i in range(6)])
            self.assertEqual(sub.wait(10), 0)

    def test_99_sigterm_exits_zero_and_removes_rules(self):
        for name, proxy in (("h1", self.h1), ("h4", self.h4)):
            # The MQTT port's rule and the WebSocket port's (--ws-port 8080 by default).
            self.assertEqual(len(self.tb.raw_prerouting_rules(name)), 2)
            self.assertEqual(proxy.stop(), 0, proxy.log()[-2000:])
            self.assertEqual(self.tb.raw_prerouting_rules(name), [])
            counters = proxy.final_counters()
            self.assertEqual(counters.get("peer_datagrams_unknown_source", 0), 0)
            self.assertEqual(counters.get("peer_datagrams_malformed", 0), 0)
            self.assertEqual(counters.get("mqtt_protocol_errors", 0), 0)


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", default=os.path.join(os.path.dirname(HERE), "build", "mqtt_proxy"))
    ap.add_argument("--artifacts", default=os.path.join(os.path.dirname(HERE), "build",
                                                        "e2e-artifacts"))
    ap.add_argument("--paho-c", default=os.path.join(os.path.dirname(HERE), "build", "tests",
                                                      "paho_c_client"))
    ap.add_argument("-k", dest="pattern", default=None, help="run only tests matching this")
    # To see test_18 fail without backpressure: --overload=drop.
    ap.add_argument("--overload", type=lambda v: ["--overload", v], default=[],
                    help=argparse.SUPPRESS)
    ARGS = ap.parse_args()
    return procs.run_suite('e2e', EndToEnd, ARGS, testbed is not None)


if __name__ == "__main__":
    sys.exit(main())
