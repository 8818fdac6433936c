"""Receivers: what one publisher's messages cost as the number of receiving proxies grows;
unicast peering against MQTT2MULTICAST against bridged Mosquitto brokers. The claim of the
multicast mode (mqtt2multicast.md 4.6, item 2, "Testing multicast tree scalability"): the
publisher's proxy sends each message once whatever the number of receivers, where unicast
peering sends one copy per receiving proxy.

Scenario: a tree of fanouts 3, 3, 2 (s1 at the root, s2-s4 below it, nine edge switches s5-s13
with two hosts each: h1, h2 on s5, ..., h17, h18 on s13). On each edge switch the odd host is a
server host and the even one its client host (a client cannot share a host with the proxy it
uses: the proxy does not capture on the loopback interface, see load.py). The publishing server
is h1, its publisher (build/bench/mosq_pub, --rate msgs/s for --seconds) on h2. R receiving
servers (R = 1, 2, 4, 8; quick: 1, 2) each have one subscriber (build/bench/loadgen) on their
client host. They are taken round-robin over the three subtrees of the root, starting away from
the publisher (s8, s11, s6, s9, s12, s7, s10, s13), so most receivers are across the root and
the trees share their upper links. Modes:
  unicast    mqtt_proxy on the R + 1 servers, peered in a full mesh (-F, bench's ProxySystem).
  multicast  mqtt_proxy with -s on the same servers, no -F, under the MQTT2MULTICAST os-ken app.
  broker     Mosquitto on the same servers; the publisher's broker has one bridge to each
             receiving broker, topic bench/# out (its messages go to every receiver's broker).
Every mode runs under the MQTT2MULTICAST app (its default shortest-path L2 for unicast): one
testbed serves all modes of a point (see load.py).

Counted per run, in a window from just before the publisher connects to 1 s after it ended
(one short message that loadgen does not count takes the way first, see load.warm_up):
  pub_out_frames  frames the publishing server's host sent to port 1883 of another host or of a
                  multicast group (tcpdump on its interface, "src host h1 and dst port 1883"):
                  the peer datagrams, the multicast datagrams, the bridges' segments; the TCP
                  ACKs toward the publisher go to its port, not 1883, and are left out. Divided
                  by the messages published: the publisher side's cost per message.
  pub_datagrams   the proxy's own count of the same: peer_datagrams_out (unicast) or
                  m2m_publish_out (multicast), from its final counters; none for Mosquitto.
  frames_rx       frames received by all switch ports minus LLDP (as load.py), per delivered
                  message.
  latency         publish to receive per message (the send time in the payload, the hosts share
                  the clock): the median of the subscribers' medians, and the largest of their
                  p99s.
"""

import os
import statistics
import struct
import time

import harness
from harness import common, testbed
import load
import procs  # noqa: E402  (mininet/, on sys.path through harness)

TREE = "3x3x2"
HOSTS_PER_EDGE = 2
# Edge switches by index (0 = s5, the publisher's; 1, 2 beside it under s2; 3-5 under s3; 6-8
# under s4), in the order receivers are added.
RECEIVER_EDGES = [3, 6, 1, 4, 7, 2, 5, 8]
RECEIVERS, QUICK_RECEIVERS = [1, 2, 4, 8], [1, 2]
MODES = [("unicast", "unicast peering"), ("multicast", "multicast (MQTT2MULTICAST)"),
         ("broker", "bridged Mosquitto")]
PUBLISHER_EDGE = 0
RATE = 100  # msgs/s, as load.py: each message its own segment
SECONDS, QUICK_SECONDS = 5.0, 2.0
SETTLE_S = 1.0


def server_host(edge):
    return edge * HOSTS_PER_EDGE + 1


def client_host(edge):
    return edge * HOSTS_PER_EDGE + 2


def count_pcap_records(path):
    """The records of a classic pcap file (tcpdump -w), however many there are."""
    n = 0
    with open(path, "rb") as f:
        header = f.read(24)
        if len(header) < 24:
            return 0
        endian = "<" if header[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return n
            incl = struct.unpack(endian + "IIII", rec)[2]
            f.seek(incl, os.SEEK_CUR)
            n += 1


class BridgedBrokers:
    """Mosquitto on the publisher's server host and on each receiving server host; the
    publisher's broker has one bridge to each of the others, topic bench/# out, QoS 0: each of its
    messages goes to every receiving broker, as unicast peering sends it to every proxy."""

    def __init__(self, tb, workdir, pub_host, receiver_hosts, config):
        self.brokers = []
        try:
            for i in receiver_hosts:
                self.brokers.append(procs.Mosquitto(tb.host(common.host_name(i)), config,
                                                    workdir))
            conf = config
            for j in receiver_hosts:
                conf += ("connection %s-to-%s\naddress %s:1883\ntopic bench/# out 0\n"
                         "cleansession true\nbridge_protocol_version mqttv311\n"
                         % (common.host_name(pub_host), common.host_name(j),
                            testbed.host_ip(j)))
            self.brokers.append(procs.Mosquitto(tb.host(common.host_name(pub_host)), conf,
                                                workdir))
            for j in receiver_hosts:
                wait_bridged_out(tb, pub_host, j)
        except BaseException:
            self.stop()
            raise

    def wait_subscribed(self, topic, sub_brokers, pub_broker, timeout=10):
        """Nothing to wait for: the bridges, up since the start, carry every bench/# message of
        the publisher's broker, and a subscription lives in the broker that acknowledged it."""

    def stop(self):
        for b in self.brokers:
            b.stop()
        return 0


def wait_bridged_out(tb, i, j, timeout=20):
    """Waits until the bridge from hi's broker to hj's carries messages: a probe published on hi,
    again every 0.1 s, reaches a subscriber on hj (common.wait_bridged checks both ways; these
    bridges go one way)."""
    topic = "bench/probe/%s-to-%s" % (common.host_name(i), common.host_name(j))
    sub = tb.popen(common.host_name(j), ["mosquitto_sub", "-h", "127.0.0.1", "-t", topic, "-C",
                                         "1", "-W", str(timeout)])

    def arrived():
        tb.run(common.host_name(i), ["mosquitto_pub", "-h", "127.0.0.1", "-t", topic, "-m",
                                     "probe"], timeout=5)
        return sub.poll() is not None

    procs.wait_for(arrived, timeout, interval=0.1)
    if sub.poll() is None:
        sub.kill()
    out, err = sub.communicate()
    if sub.returncode != 0 or out.decode().strip() != "probe":
        raise RuntimeError("the bridge %s -> %s does not carry %s within %d s: %s %s"
                           % (common.host_name(i), common.host_name(j), topic, timeout,
                              out.decode(), err.decode()))


class Receivers(harness.Experiment):
    name = "receivers"
    columns = ["sent", "delivered", "loss_pct", "pub_out_frames", "pub_out_per_msg",
               "pub_datagrams", "pub_datagrams_per_msg", "frames_rx", "frames_tx", "lldp_rx",
               "frames_per_delivered", "frames_per_published", "p50_ms", "p99_ms",
               "rx_per_switch"]
    metrics = ["pub_out_per_msg", "pub_datagrams_per_msg", "frames_per_delivered",
               "frames_per_published", "p50_ms", "p99_ms", "loss_pct"]

    def points(self, args):
        counts = args.points or (QUICK_RECEIVERS if args.quick else RECEIVERS)
        for n in counts:
            if not 1 <= n <= len(RECEIVER_EDGES):
                raise SystemExit("receivers: between 1 and %d receiving proxies (the tree has "
                                 "%d edge switches beside the publisher's)"
                                 % (len(RECEIVER_EDGES), len(RECEIVER_EDGES)))
        return [harness.Point({"receivers": int(n)}, "receivers=%d" % n,
                              {"tree": TREE, "controller": "m2m"})
                for n in counts]

    def systems(self, args):
        modes = dict(MODES)
        wanted = args.modes or [k for k, _ in MODES]
        for m in wanted:
            if m not in modes:
                raise SystemExit("receivers: unknown mode %s (known: %s)"
                                 % (m, ", ".join(modes)))
        return [(k, label) for k, label in MODES if k in wanted]

    def seconds(self, args):
        return args.seconds or (QUICK_SECONDS if args.quick else SECONDS)

    def rate(self, args):
        return args.rate or RATE

    def config(self, args):
        from latency import broker_config  # pylint: disable=import-outside-toplevel
        return {"topology": "tree fanouts %s (13 switches, 18 hosts)" % TREE,
                "tree": TREE, "host_delay_ms": 0, "switch_delay_ms": 0,
                "rate_msgs_per_s": self.rate(args), "seconds_per_run": self.seconds(args),
                "payload_bytes": 64,
                "scenario": "publishing server h1, publisher h2; receiving server h(2e+1) with "
                            "its subscriber on h(2e+2) for edge switches e in %s, the first R"
                            % RECEIVER_EDGES,
                "unicast": "mqtt_proxy on the R+1 servers, full mesh (-F)",
                "multicast": "mqtt_proxy %s on the R+1 servers, no -F"
                             % " ".join(load.M2M_PROXY_OPTIONS),
                "broker": "mosquitto on the R+1 servers, the publisher's broker bridged to each "
                          "receiving broker (topic bench/# out 0)",
                "controller": "mininet/controller/mqtt2multicast.py --observe-links "
                              "(its default shortest-path L2) for every mode",
                "counted": "publisher side: tcpdump on h1-eth0 'src host h1 and dst port 1883'; "
                           "switches: rx packets of every port minus the LLDP flows' n_packets; "
                           "from before the publisher connects to %.1f s after it ended"
                           % SETTLE_S,
                "latency": "median of the subscribers' p50; largest of their p99",
                "mosquitto_config": broker_config(args)}

    def start_system(self, tb, mode, receiver_hosts, workdir, args):
        from latency import broker_config  # pylint: disable=import-outside-toplevel
        pub = server_host(PUBLISHER_EDGE)
        if mode == "unicast":
            return common.ProxySystem(tb, [pub] + receiver_hosts)
        if mode == "multicast":
            return load.MulticastSystem(tb, [pub] + receiver_hosts)
        if mode == "broker":
            return BridgedBrokers(tb, workdir, pub, receiver_hosts, broker_config(args))
        raise ValueError(mode)

    def measure(self, tb, mode, point, rep, args, workdir):
        n = point.values["receivers"]
        edges = RECEIVER_EDGES[:n]
        servers = [server_host(e) for e in edges]
        clients = [client_host(e) for e in edges]
        pub_server, publisher = server_host(PUBLISHER_EDGE), client_host(PUBLISHER_EDGE)
        pub_ip = testbed.host_ip(pub_server)
        seconds = self.seconds(args)
        topic = "bench/exp/receivers/%d/%s/%d" % (n, mode, rep)
        pcap = os.path.join(workdir, "receivers-%d-%s-%d-%s.pcap"
                            % (n, mode, rep, common.host_name(pub_server)))
        system = self.start_system(tb, mode, servers, workdir, args)
        capture = None
        try:
            with harness.RunProcesses(tb):
                subs = [common.start_subscriber(tb, args.loadgen, common.host_name(c),
                                                testbed.host_ip(s), topic, 1, seconds + 6,
                                                "rcv%d-%d" % (rep, c))
                        for s, c in zip(servers, clients)]
                system.wait_subscribed(topic, [testbed.host_ip(s) for s in servers], pub_ip)
                load.warm_up(tb, system, publisher, pub_ip, topic, [pub_server] + servers)
                # What the publishing server sends toward other servers (or the group), not the
                # ACKs to its own publisher (those go to the publisher's port).
                capture = procs.Capture(tb.host(common.host_name(pub_server)),
                                        "%s-eth0" % common.host_name(pub_server), pcap,
                                        bpf="src host %s and dst port 1883" % pub_ip)
                before = load.switch_counts(tb)
                pub = common.start_publisher(tb, args.publisher, common.host_name(publisher),
                                             pub_ip, topic, 1, self.rate(args), seconds, 1)
                published = common.client_result(pub, seconds + 60)
                time.sleep(SETTLE_S)  # part of the measurement window, not a barrier
                after = load.switch_counts(tb)
                capture.stop()
                got = [common.client_result(s, seconds + 60) for s in subs]
        finally:
            if capture is not None:
                capture.stop()
            system.stop()
        counters = {}
        if mode == "multicast":
            counters = system.counters.get(pub_ip, {})
            datagrams = counters.get("m2m_publish_out")
        elif mode == "unicast":
            counters = system.servers[pub_ip].final_counters()
            datagrams = counters.get("peer_datagrams_out")
        else:
            datagrams = None
        sent = published["sent"]
        delivered = sum(g["received"] for g in got)
        rx, frames_rx, frames_tx, lldp = load.count_deltas(before, after)
        pub_out = count_pcap_records(pcap)
        expected = sent * n
        return {
            "sent": sent, "delivered": delivered,
            "loss_pct": 100.0 * (expected - delivered) / expected if expected else 0.0,
            "pub_out_frames": pub_out,
            "pub_out_per_msg": pub_out / sent if sent else float("nan"),
            "pub_datagrams": "" if datagrams is None else datagrams,
            "pub_datagrams_per_msg": "" if datagrams is None or not sent else datagrams / sent,
            "frames_rx": frames_rx, "frames_tx": frames_tx, "lldp_rx": lldp,
            "frames_per_delivered": frames_rx / delivered if delivered else float("nan"),
            "frames_per_published": frames_rx / sent if sent else float("nan"),
            "p50_ms": statistics.median(g["p50_us"] for g in got) / 1000.0,
            "p99_ms": max(g["p99_us"] for g in got) / 1000.0,
            "rx_per_switch": load.per_switch(rx),
        }

    def check(self, row):
        return None if row["delivered"] else "nothing delivered (%d sent)" % row["sent"]

    def describe(self, row):
        return ("%d/%d delivered; publisher side %.2f frames per message (proxy: %s); switches "
                "%.2f frames per delivered message; p50 %.2f ms, p99 %.2f ms"
                % (row["delivered"], row["sent"] * row["receivers"], row["pub_out_per_msg"],
                   "-" if row["pub_datagrams_per_msg"] == "" else
                   "%.2f datagrams" % row["pub_datagrams_per_msg"],
                   row["frames_per_delivered"], row["p50_ms"], row["p99_ms"]))

    def plot(self, plt, summary, args, path):
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        xs_all = sorted({r["receivers"] for r in summary})
        # Each legend where its panel has no data; the latencies' six entries go under the panel.
        panels = ((axes[0], [("pub_out_per_msg", "o-", "")],
                   "frames the publishing server sends\nper published message", "upper left"),
                  (axes[1], [("frames_per_delivered", "o-", "")],
                   "switch frames per delivered message", "lower left"),
                  (axes[2], [("p50_ms", "o-", ", median"), ("p99_ms", "s--", ", p99")],
                   "publish-to-receive latency (ms)", None))
        for ax, metrics, ylabel, where in panels:
            for key, label in self.systems(args):
                for metric, style, suffix in metrics:
                    xs, med, lo, hi = harness.series(summary, "receivers", key, metric)
                    if xs:
                        ax.errorbar(xs, med, yerr=[lo, hi], fmt=style, color=load.COLORS[key],
                                    capsize=3, label=label + suffix,
                                    alpha=1.0 if style == "o-" else 0.6)
            ax.set_xticks(xs_all)
            ax.set_xlabel("receiving proxies (brokers), one subscriber each")
            ax.set_ylabel(ylabel)
            ax.set_ylim(bottom=0)
            ax.grid(True, alpha=0.3)
            if where:
                ax.legend(fontsize=7, loc=where)
            else:
                ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=2)
        fig.suptitle("One publisher, growing receivers, tree %s (median of %d run%s, bars: "
                     "min-max)" % (TREE.replace("x", "-"), args.reps,
                                   "" if args.reps == 1 else "s"), fontsize=10)
        fig.savefig(path, dpi=120, bbox_inches="tight")

    def print_summary(self, summary):
        harness.print_table(summary, "receivers", [("pub_out_per_msg", "%.2f"),
                                                   ("frames_per_delivered", "%.2f"),
                                                   ("p50_ms", "%.2f"), ("p99_ms", "%.2f"),
                                                   ("loss_pct", "%.1f")], MODES)
