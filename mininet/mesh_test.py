#!/usr/bin/python3
"""End-to-end test of a full mesh of proxies in a larger Mininet tree, with stock clients.

The tree has depth 2 and fanout 3: s1 over s2 (h1-h3), s3 (h4-h6) and s4 (h7-h9). Proxies run on
h1, h4, h7 and h9 (--proxies), each naming every other one with -F; the clients of each proxy
(mosquitto_sub, mosquitto_pub) run on a host without a proxy and reach it across the switches.
tcpdump records the interface of every proxy host for the whole run, so the tests count the PUBLISH
packets that leave each proxy, alone in a datagram or batched behind the extension's DATA header.

What a mesh relies on (docs/peering.md): a proxy sends a PUBLISH once to each peer that has a
subscriber for it and to no other, and never sends on a PUBLISH it got from a peer, so a message
crosses one UDP hop and the mesh has no loops. Checked for every ordered pair of proxies, for a
burst into every proxy, and over rounds in which subscribers come and go on every proxy. On failure
the proxies' logs and the pcaps stay in the artifacts directory.

Exit status 77 (ctest: skipped) when not root or when Mininet / Open vSwitch are missing.
"""

import argparse
import collections
import datetime
import itertools
import os
import re
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

HERE = os.path.dirname(os.path.abspath(__file__))
ARGS = None
DEPTH, FANOUT = 2, 3
HOSTS = ["h%d" % i for i in range(1, FANOUT ** DEPTH + 1)]

SENTINELS = "mesh/sentinel/#"  # held on every proxy for the whole run: the barriers' route
CHURN = "mesh/churn/#"
# The churn every proxy goes through, one step a round, each proxy one step ahead of the one
# before it, so every round has proxies with and without subscribers: (subscribers after the
# step, swap). A swap keeps one subscriber but replaces it, the new one joining before the old one
# leaves: the proxy's peers must hear nothing of it.
CHURN_CYCLE = ((1, False), (2, False), (0, False), (1, False), (1, True), (0, False))
CHURN_ROUNDS = 2 * len(CHURN_CYCLE)
LOG_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"

Sub = collections.namedtuple("Sub", "id proxy proc lines")


def require(ok, message):
    """assertTrue for the helpers that setUpClass uses too."""
    if not ok:
        raise AssertionError(message)


def sentinel_topic(tag, name):
    return "mesh/sentinel/%s/%s" % (tag, name)


class Mesh(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.names = ARGS.proxies
        cls.ip = {h: testbed.host_ip(int(h[1:])) for h in HOSTS}
        cls.name_of = {ip: h for h, ip in cls.ip.items()}
        free = [h for h in HOSTS if h not in cls.names]
        cls.client = {n: free[i % len(free)] for i, n in enumerate(cls.names)}
        cls.tb = testbed.Testbed(ARGS.artifacts, depth=DEPTH, fanout=FANOUT,
                                 proxy_binary=ARGS.proxy)
        cls.tb.start()
        try:
            cls.caps = {n: cls.tb.capture(n) for n in cls.names}
            cls.proxy = {}
            for n in cls.names:
                peers = [cls.ip[m] for m in cls.others(n)]
                cls.proxy[n] = cls.tb.start_proxy(n, peers=peers, extra=["--log-level", "debug"])
            # Every pair completed the extension's handshake: from here on the capable peers'
            # datagrams carry DATA headers and may be batches.
            for n in cls.names:
                for m in cls.others(n):
                    require(cls.proxy[n].wait_log("peer %s speaks the extension" % cls.ip[m]),
                            "%s never heard %s's HELLO" % (n, m))
            since = cls.log_sizes()
            cls.watchers = [cls.subscribe(n, "watch-" + n, [SENTINELS]) for n in cls.names]
            for n in cls.names:
                cls.wait_interest(n, SENTINELS, True, since)
        except BaseException:
            cls.tb.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.tb.stop()

    # -- helpers -------------------------------------------------------------------------------

    @classmethod
    def others(cls, name):
        return [m for m in cls.names if m != name]

    @classmethod
    def auth(cls):
        return ["-u", testbed.USER, "-P", testbed.PASSWORD]

    @classmethod
    def log_sizes(cls):
        return {n: cls.proxy[n].log_size() for n in cls.names}

    @classmethod
    def subscribe(cls, name, client_id, topics, count=None):
        """A mosquitto_sub on proxy `name`'s client host; returns once the proxy logged its
        SUBSCRIBE for every topic."""
        args = ["mosquitto_sub", "-h", cls.ip[name], "-i", client_id, "-v", "-W", "600"]
        args += ["-C", str(count)] if count is not None else []
        for t in topics:
            args += ["-t", t]
        p = cls.tb.popen(cls.client[name], args + cls.auth())
        sub = Sub(client_id, name, p, Lines(p.stdout))
        for t in topics:
            require(cls.proxy[name].wait_log("id=%s topic=%s qos=" % (client_id, t)),
                    "%s never logged %s's SUBSCRIBE %s" % (name, client_id, t))
        return sub

    @classmethod
    def wait_interest(cls, origin, topic, subscribed, since, count=1):
        """Waits until every peer of `origin` logged `origin`'s `count`-th SUBSCRIBE (or
        UNSUBSCRIBE) of `topic` since `since`: then a PUBLISH reaching it is forwarded (or not)."""
        for m in cls.others(origin):
            require(cls.proxy[m].wait_peer_interest(topic, subscribed, count, 10,
                                                    peer=cls.ip[origin], since=since[m]),
                    "%s never saw %s's %s %s" % (m, origin, "SUBSCRIBE" if subscribed
                                                 else "UNSUBSCRIBE", topic))

    @classmethod
    def leave(cls, sub, how):
        """Ends a subscriber, with a DISCONNECT (SIGTERM: mosquitto_sub disconnects) or without
        (SIGKILL: the kernel's FIN), and waits until its proxy logged that it went."""
        sub.proc.send_signal(signal.SIGTERM if how == "term" else signal.SIGKILL)
        sub.proc.wait(10)
        cls.wait_gone(sub.proxy, sub.id)

    @classmethod
    def wait_gone(cls, name, client_id):
        gone = re.compile(r"DISCONNECT client=\S+ id=%s(:| |$)" % re.escape(client_id), re.M)
        require(procs.wait_for(lambda: gone.search(cls.proxy[name].log()), 10),
                "%s never logged that %s went" % (name, client_id))

    def publish(self, name, topic, message=None, lines=None):
        """mosquitto_pub on proxy `name`'s client host: one message, or the `lines` as a burst on
        one connection."""
        args = ["mosquitto_pub", "-h", self.ip[name], "-t", topic] + self.auth()
        if lines is not None:
            rc, out, err = self.tb.run(self.client[name], args + ["-l"],
                                       input_text="\n".join(lines) + "\n")
        else:
            rc, out, err = self.tb.run(self.client[name], args + ["-m", message])
        self.assertEqual(rc, 0, "mosquitto_pub via %s failed: %s %s" % (name, out, err))

    def received(self, sub, n, timeout=20):
        return [sub.lines.next(timeout) for _ in range(n)]

    @classmethod
    def until_sentinels(cls, sub, tag):
        """Reads `sub` until it printed the sentinel of `tag` from every proxy; returns the other
        lines it printed before (a sentinel printed twice among them)."""
        missing = {sentinel_topic(tag, n) for n in cls.names}
        before = []
        while missing:
            line = sub.lines.next(20)
            topic = line.split(" ", 1)[0]
            if topic in missing:
                missing.discard(topic)
            else:
                before.append(line)
        return before

    def barrier(self, tag, subs):
        """Ends a round of messages: returns, for every subscriber in `subs`, what it printed
        before the barrier's sentinels.

        Every proxy's client publishes a sentinel after the round's messages, and every proxy has
        a subscriber of the sentinels (the watchers), so every proxy sends its sentinel to every
        peer. Each hop keeps order: a proxy handles its clients' segments in turn, sends to a peer
        in turn, writes to a client's connection in turn. So once a subscriber printed the
        sentinels of all proxies, every message of the round that was going to reach it did; and
        once proxy X's sentinel to peer Y is in X's capture, so is every datagram X sent Y before
        it, including any copy of a peer's PUBLISH that X (wrongly) sent on while it handled it."""
        for n in self.names:
            self.publish(n, sentinel_topic(tag, n), "sentinel")
        before = {}
        for sub in self.watchers + list(subs):
            before[sub.id] = self.until_sentinels(sub, tag)
        for w in self.watchers:
            self.assertEqual(before.pop(w.id), [], "the watcher of %s printed more" % w.proxy)
        for n in self.names:
            def all_sent(n=n):
                packets = pcapread.count_packets(self.caps[n].path)[0]
                return all(packets[(self.ip[n], self.ip[m], "PUBLISH",
                                    sentinel_topic(tag, n))] >= 1 for m in self.others(n))
            self.assertTrue(procs.wait_for(all_sent, 10),
                            "%s's sentinel %s is not in its capture for every peer" % (n, tag))
        return before

    def publishes_out(self, topic):
        """PUBLISH packets and datagrams of `topic` that left each proxy, from its own capture:
        two dicts over (proxy, destination), destinations named by host."""
        packets, datagrams = {}, {}
        for n in self.names:
            p, d = pcapread.count_packets(self.caps[n].path)
            for (src, dst, kind, name), count in p.items():
                if src == self.ip[n] and kind == "PUBLISH" and name == topic:
                    key = (n, self.name_of.get(dst, dst))
                    packets[key] = count
                    datagrams[key] = d[(src, dst, kind, name)]
        return packets, datagrams

    def assert_one_hop(self, topic, published, interested):
        """`published[n]` messages on `topic` came from proxy n's clients: each proxy sent every
        one of them once to every interested peer and to no other peer, and nothing else on
        `topic` left any proxy (a proxy that sent on a peer's PUBLISH would show it). Returns the
        datagrams per (proxy, peer)."""
        packets, datagrams = self.publishes_out(topic)
        want = {(n, m): published.get(n, 0) if m in interested else 0
                for n in self.names for m in self.others(n)}
        got = {key: packets.get(key, 0) for key in want}
        got.update({key: c for key, c in packets.items() if key not in want})
        self.assertEqual(got, want, "PUBLISH %s per (proxy, peer)" % topic)
        return datagrams

    def log_time(self, name, suffix):
        """The time of the first line of proxy `name`'s log that ends with `suffix`."""
        for line in self.proxy[name].log().splitlines():
            if line.endswith(suffix):
                stamp = datetime.datetime.strptime(line.split(" ", 1)[0], LOG_TIME)
                return stamp.replace(tzinfo=datetime.timezone.utc).timestamp()
        self.fail("no line ending %r in %s's log" % (suffix, name))

    def interest_lag(self, origin, topic, kind):
        """Seconds from `origin` announcing `kind` (SUBSCRIBE, UNSUBSCRIBE) of `topic` to the last
        of its peers recording it, from the proxies' logs (one clock: the hosts share it)."""
        sent = self.log_time(origin, " %s sent to %d peer(s) topic=%s"
                             % (kind, len(self.names) - 1, topic))
        return max(self.log_time(m, "peer %s %s topic=%s" % (self.ip[origin], kind, topic))
                   for m in self.others(origin)) - sent

    # -- tests -----------------------------------------------------------------------------------

    def test_00_the_tree_has_depth_2_and_fanout_3(self):
        net = self.tb.net
        self.assertEqual(sorted(h.name for h in net.hosts), sorted(HOSTS))
        for i, h in enumerate(HOSTS):
            host = net.get(h)
            self.assertEqual(host.IP(), testbed.host_ip(i + 1))
            link = host.intf().link
            switch = link.intf2.node if link.intf1.node is host else link.intf1.node
            self.assertEqual(switch.name, "s%d" % (2 + i // FANOUT), h)
        self.assertEqual(sorted(l.intf2.node.name if l.intf1.node.name == "s1" else
                                l.intf1.node.name for l in net.links if "s1" in
                                (l.intf1.node.name, l.intf2.node.name)), ["s2", "s3", "s4"])
        # The controller learnt every switch's hosts (start() pinged all pairs): it installed
        # forwarding flows in each, beside the table-miss entry.
        for s in net.switches:
            out = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", s.name],
                                 capture_output=True, text=True).stdout
            self.assertIn("priority=1,", out, s.name)
        # The reference tree the other tests use is unchanged.
        ref = testbed.TreeTopo(depth=2, fanout=2)
        self.assertEqual(sorted(tuple(sorted(l)) for l in ref.links()),
                         [("h1", "s2"), ("h2", "s2"), ("h3", "s3"), ("h4", "s3"), ("s1", "s2"),
                          ("s1", "s3")])
        self.assertEqual([ref.nodeInfo(h)["ip"] for h in ("h1", "h2", "h3", "h4")],
                         ["192.168.1.%d/24" % i for i in (101, 102, 103, 104)])

    def test_01_every_ordered_pair_delivers_over_one_hop(self):
        # One topic per proxy: a message for mesh/pair/X, published behind each other proxy Y,
        # interests X alone, so Y sends it to X and to none of the others.
        n = len(self.names)
        since = self.log_sizes()
        topic = {x: "mesh/pair/%s" % x for x in self.names}
        subs = {x: self.subscribe(x, "pair-" + x, [topic[x]], count=n - 1) for x in self.names}
        for x in self.names:
            self.wait_interest(x, topic[x], True, since)
        started = time.monotonic()
        for y in self.names:
            for x in self.others(y):
                self.publish(y, topic[x], "from-" + y)
        for x in self.names:
            self.assertEqual(sorted(self.received(subs[x], n - 1)),
                             ["%s from-%s" % (topic[x], y) for y in self.others(x)])
            self.assertEqual(subs[x].proc.wait(10), 0)
        delivered = time.monotonic() - started
        for x in self.names:  # -C: each subscriber left after its last message
            self.wait_interest(x, topic[x], False, since)
        self.barrier("pairs", [])
        datagrams = []
        for x in self.names:
            datagrams += self.assert_one_hop(topic[x], {y: 1 for y in self.others(x)},
                                             {x}).values()
        sub_lag = [self.interest_lag(x, topic[x], "SUBSCRIBE") for x in self.names]
        unsub_lag = [self.interest_lag(x, topic[x], "UNSUBSCRIBE") for x in self.names]
        print("\n  %d ordered pairs delivered in %.2f s (one mosquitto_pub each); %d datagram(s) "
              "per message; interest reached all %d peers within %.1f ms (SUBSCRIBE), %.1f ms "
              "(UNSUBSCRIBE) at most" % (n * (n - 1), delivered, max(datagrams), n - 1,
                                         1000 * max(sub_lag), 1000 * max(unsub_lag)))
        self.assertEqual(set(datagrams), {1})

    def test_02_a_burst_into_every_proxy_reaches_every_other_once(self):
        k, n = 20, len(self.names)
        topic = "mesh/fan"
        since = self.log_sizes()
        subs = {x: self.subscribe(x, "fan-" + x, [topic], count=n * k) for x in self.names}
        for x in self.names:
            self.wait_interest(x, topic, True, since)
        sent = {y: ["%s-%02d" % (y, i) for i in range(k)] for y in self.names}
        for y in self.names:
            self.publish(y, topic, lines=sent[y])  # one connection: many PUBLISHes a segment
        for x in self.names:
            got = [line.split(" ", 1)[1] for line in self.received(subs[x], n * k)]
            for y in self.names:  # every message once, each publisher's in order
                self.assertEqual([m for m in got if m.startswith(y + "-")], sent[y], (x, y))
            self.assertEqual(subs[x].proc.wait(10), 0)
        for x in self.names:
            self.wait_interest(x, topic, False, since)
        self.barrier("fan", [])
        datagrams = self.assert_one_hop(topic, {y: k for y in self.names}, set(self.names))
        print("\n  a burst of %d from each proxy: %d PUBLISH packets to each of its %d peers, in "
              "%d to %d datagrams" % (k, k, n - 1, min(datagrams.values()),
                                      max(datagrams.values())))

    def test_03_interest_follows_subscribers_that_come_and_go(self):
        n = len(self.names)
        current = {x: [] for x in self.names}  # the subscribers behind each proxy, oldest first
        announced = {x: collections.Counter() for x in self.names}  # over the whole test
        ids, hows = itertools.count(), itertools.cycle(("term", "kill"))
        for r in range(CHURN_ROUNDS):
            started = time.monotonic()
            since = self.log_sizes()
            expect = {x: collections.Counter() for x in self.names}  # this round's announcements
            # A subscriber on every proxy that subscribes and leaves at once (-E): where it is the
            # only one, its proxy announces the filter and withdraws it straight after.
            flashes = []
            for x in self.names:
                sub_id = "flash-%s-%d" % (x, next(ids))
                flashes.append((x, sub_id, self.tb.popen(self.client[x], [
                    "mosquitto_sub", "-h", self.ip[x], "-i", sub_id, "-t", CHURN, "-E"]
                    + self.auth())))
            for x, sub_id, p in flashes:
                self.assertEqual(p.wait(10), 0, p.stderr.read().decode())
                self.wait_gone(x, sub_id)
                if not current[x]:
                    expect[x].update(["SUBSCRIBE", "UNSUBSCRIBE"])
            # The round's step on every proxy: joins first, then leaves.
            for i, x in enumerate(self.names):
                target, swap = CHURN_CYCLE[(r + i) % len(CHURN_CYCLE)]
                had = len(current[x])
                for _ in range(max(0, target - had) + swap):
                    current[x].append(self.subscribe(x, "churn-%s-%d" % (x, next(ids)),
                                                     [CHURN, SENTINELS]))
                for _ in range(max(0, had - target) + swap):
                    self.leave(current[x].pop(0), next(hows))
                if had == 0 and target > 0:
                    expect[x]["SUBSCRIBE"] += 1
                if had > 0 and target == 0:
                    expect[x]["UNSUBSCRIBE"] += 1
            # Every peer heard every announcement (a refresh can add SUBSCRIBEs, never
            # UNSUBSCRIBEs) ...
            for x in self.names:
                for m in self.others(x):
                    def heard(x=x, m=m):
                        return all(self.proxy[m].peer_interest_lines(
                            CHURN, kind == "SUBSCRIBE", self.ip[x], since[m]) >= expect[x][kind]
                            for kind in ("SUBSCRIBE", "UNSUBSCRIBE"))
                    self.assertTrue(procs.wait_for(heard, 10), "round %d: %s did not hear %s's %s"
                                    % (r, m, x, dict(expect[x])))
                announced[x].update(expect[x])
            # ... and every proxy's view of every peer's interest is what the peer has. (A wait,
            # not a look: a refresh of the flash's filter may have been among the SUBSCRIBEs
            # counted above, ahead of the last one.)
            for m in self.names:
                for x in self.others(m):
                    want = {SENTINELS} | ({CHURN} if current[x] else set())
                    procs.wait_for(lambda: self.proxy[m].peer_filters(self.ip[x]) == want, 5)
                    self.assertEqual(self.proxy[m].peer_filters(self.ip[x]), want,
                                     "round %d: what %s holds for %s" % (r, m, x))
            # A message from behind every proxy reaches exactly the current subscribers.
            topic = "mesh/churn/r%d" % r
            for y in self.names:
                self.publish(y, topic, "from-" + y)
            live = [s for x in self.names for s in current[x]]
            for s in live:
                self.assertEqual(sorted(self.received(s, n)),
                                 ["%s from-%s" % (topic, y) for y in self.names], s.id)
            late = self.barrier("r%d" % r, live)
            self.assertEqual({s: l for s, l in late.items() if l}, {},
                             "round %d: printed after their messages" % r)
            interested = {x for x in self.names if current[x]}
            datagrams = self.assert_one_hop(topic, {y: 1 for y in self.names}, interested)
            # UNSUBSCRIBE is never refreshed: exactly the announced ones went out.
            for x in self.names:
                for m in self.others(x):
                    self.assertEqual(self.proxy[m].peer_interest_lines(CHURN, False, self.ip[x],
                                                                       since[m]),
                                     expect[x]["UNSUBSCRIBE"], "round %d: %s from %s" % (r, m, x))
            print("\n  round %d: subscribers %s; PUBLISH datagrams of each proxy's message %s; "
                  "%.1f s" % (r, " ".join("%s=%d" % (x, len(current[x])) for x in self.names),
                              " ".join("%s=%d" % (y, sum(c for (s, _), c in datagrams.items()
                                                         if s == y)) for y in self.names),
                              time.monotonic() - started), end="")
        since = self.log_sizes()
        for x in self.names:
            for s in current[x]:
                self.leave(s, next(hows))
            if current[x]:
                announced[x]["UNSUBSCRIBE"] += 1
                self.wait_interest(x, CHURN, False, since)
        for m in self.names:
            for x in self.others(m):
                self.assertEqual(self.proxy[m].peer_filters(self.ip[x]), {SENTINELS}, (m, x))
        # Over the whole test, every announcement a proxy logged, and every one in its capture,
        # was one its subscribers' coming and going called for.
        for x in self.names:
            log = self.proxy[x].log()
            for kind in ("SUBSCRIBE", "UNSUBSCRIBE"):
                self.assertEqual(log.count(" %s sent to %d peer(s) topic=%s\n"
                                           % (kind, n - 1, CHURN)), announced[x][kind], (x, kind))
            # The last UNSUBSCRIBEs reached the peers: tcpdump has them or is about to write them.
            procs.wait_for(lambda: all(
                pcapread.count_packets(self.caps[x].path)[0][(self.ip[x], self.ip[m], "UNSUBSCRIBE",
                                                             CHURN)] >= announced[x]["UNSUBSCRIBE"]
                for m in self.others(x)), 5)
            packets = pcapread.count_packets(self.caps[x].path)[0]
            for m in self.others(x):
                key = (self.ip[x], self.ip[m])
                self.assertEqual(packets[key + ("UNSUBSCRIBE", CHURN)],
                                 announced[x]["UNSUBSCRIBE"], (x, m))
                # SUBSCRIBE: the announced ones, and the refreshes while a subscriber was there.
                self.assertGreaterEqual(packets[key + ("SUBSCRIBE", CHURN)],
                                        announced[x]["SUBSCRIBE"], (x, m))
        print()

    def test_99_proxies_exit_cleanly_and_their_counters_match_the_captures(self):
        for x in self.names:
            self.assertEqual(self.proxy[x].stop(), 0, self.proxy[x].log()[-2000:])
        for x in self.names:
            counters = self.proxy[x].final_counters()
            packets = pcapread.count_packets(self.caps[x].path)[0]
            out = sum(c for (s, _, kind, _), c in packets.items()
                      if s == self.ip[x] and kind == "PUBLISH")
            into = sum(c for (_, d, kind, _), c in packets.items()
                       if d == self.ip[x] and kind == "PUBLISH")
            self.assertEqual(counters.get("peer_publish_out"), out, x)
            self.assertEqual(counters.get("peer_publish_in"), into, x)
            for zero in ("peer_datagrams_unknown_source", "peer_datagrams_malformed",
                         "peer_datagrams_lost", "peer_publish_lost", "peer_publish_dropped",
                         "mqtt_protocol_errors"):
                self.assertEqual(counters.get(zero, 0), 0, (x, zero))


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", default=os.path.join(os.path.dirname(HERE), "build", "mqtt_proxy"))
    ap.add_argument("--artifacts", default=os.path.join(os.path.dirname(HERE), "build",
                                                        "mesh-artifacts"))
    ap.add_argument("--proxies", type=lambda v: v.split(","), default=["h1", "h4", "h7", "h9"],
                    help="the hosts that run a proxy, comma-separated (default h1,h4,h7,h9)")
    ap.add_argument("-k", dest="pattern", default=None, help="run only tests matching this")
    ARGS = ap.parse_args()
    return procs.run_suite('mesh', Mesh, ARGS, testbed is not None)


if __name__ == "__main__":
    sys.exit(main())
