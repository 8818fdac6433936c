"""Network load: frames on the switch ports per delivered message as the tree grows; a central
broker, unicast peering and MQTT2MULTICAST. The prototype's second figure (mqtt2multicast.md 4.6,
item 2).

Scenario: a tree of depth 2 and fanout F (F = 2, 3, 4: 4, 9, 16 hosts; F edge switches of F hosts
each). The first host of each edge switch (h1, h(F+1), ...) is a server host; every other host
runs one subscriber (build/bench/loadgen), F (F - 1) in all, and the last host h(F*F) also runs
the publisher (build/bench/mosq_pub) at --rate msgs/s for --seconds. The same clients on the same
hosts in every mode; only where they connect differs:
  central broker   Mosquitto on h1 (the other server hosts idle); every client connects to h1.
  unicast peering  mqtt_proxy on every server host, all peered in a full mesh (bench's
                   ProxySystem); each client connects to the proxy of its own edge switch, so the
                   publisher's proxy sends each message once to each of the F - 1 other proxies.
  multicast        mqtt_proxy on every server host with -s (MQTT2MULTICAST), no -F; clients as
                   for unicast peering. The publisher's proxy sends each message once, to the
                   topic's group, and the switches copy it along the tree the controller built
                   to every proxy with a subscriber.
Clients cannot share a host with the proxy: a client on the proxy's host would reach it through
the loopback interface, where the proxy does not capture.

Every mode runs under the MQTT2MULTICAST os-ken app (mininet/controller/mqtt2multicast.py with
--observe-links, harness.CONTROLLERS; its default shortest-path L2 for unicast): the harness
builds one testbed per point and measures every mode on it, and a testbed's controller is chosen
when it is built, so the modes share the controller the multicast mode needs.

Counted: the frames the switches' ports received (OpenFlow port statistics, ovs-ofctl dump-ports;
a frame counts once per switch it enters, TCP ACKs, the peers' credit messages and everything else
included), minus the topology discovery's LLDP frames (the n_packets of every switch's LLDP flow:
the prototype's stats scripts left LLDP out too), from just before the publisher connects until
1 s after it disconnected, divided by the messages delivered (the copies all subscribers received
together). The frames sent by the ports are in the CSV too, and the received frames per switch.
Before that window one short message (too short for loadgen to count) goes the whole way in
every mode, so the multicast mode's first PUBLISH of the topic (held by the proxy until the
controller's REPLY, and the tree installed after it) is not part of the figures.
"""

import re
import time

import harness
from harness import common, testbed
import procs  # noqa: E402  (mininet/, on sys.path through harness)

FANOUTS, QUICK_FANOUTS = [2, 3, 4], [2]
DEPTH = 2
# The modes, in the order of the plot.
MODES = [("broker", "central broker"), ("unicast", "unicast peering"),
         ("multicast", "multicast (MQTT2MULTICAST)")]
COLORS = {"broker": "tab:blue", "unicast": "tab:orange", "multicast": "tab:green"}
RATE = 100  # msgs/s: a sensor-like pace, each message its own segment
SECONDS, QUICK_SECONDS = 5.0, 2.0
SETTLE_S = 1.0  # after the publisher disconnected: the last messages reach every subscriber

# MQTT2MULTICAST: the controller's virtual address and ports, as the testbed's tests run them.
M2M_PROXY_OPTIONS = testbed.M2M_PROXY_ARGS
WARM_UP_S = 15  # the short message's way and the tree: a few 100 ms, a second at worst


class MulticastSystem:
    """mqtt_proxy in MQTT2MULTICAST mode (-s, no -F) on the testbed hosts numbered `hosts`."""

    def __init__(self, tb, hosts):
        self.tb = tb
        self.servers = {}  # address -> procs.Proxy
        self.group = None  # the topic's group, once a subscribers' proxy learnt it
        self.counters = {}  # address -> the proxy's final counters, after stop()
        try:
            for i in hosts:
                self.servers[testbed.host_ip(i)] = tb.start_proxy(common.host_name(i),
                                                                  extra=M2M_PROXY_OPTIONS)
        except BaseException:
            self.stop()
            raise

    def wait_subscribed(self, topic, sub_brokers, pub_broker, timeout=10):
        """Returns once every subscribers' proxy had the controller's REPLY to its subscribe
        REQUEST for `topic` (logged at info level), so that it is a receiver of the topic's tree
        and listens to its group."""
        pattern = re.compile(r"topic=%s has group (\S+)" % re.escape(topic))
        for broker in sorted(set(sub_brokers)):
            proxy = self.servers[broker]
            found = []

            def seen(proxy=proxy, found=found):
                m = pattern.search(proxy.log())
                if m:
                    found.append(m.group(1))
                return bool(m)

            if not procs.wait_for(seen, timeout, interval=0.1):
                raise RuntimeError("the proxy on %s never learnt the group of %s"
                                   % (proxy.host.name, topic))
            self.group = found[0]

    def wait_tree(self, hosts, timeout=WARM_UP_S):
        """Waits until the edge switch of every host numbered `hosts` has the flow of the topic's
        group: the tree is in place (the publisher's proxy announced itself with its first
        PUBLISH)."""
        switches = sorted({edge_switch(self.tb, common.host_name(i)) for i in hosts})
        for sw in switches:
            if not procs.wait_for(lambda sw=sw: "nw_dst=%s " % self.group in dump_flows(sw),
                                  timeout, interval=0.1):
                raise RuntimeError("%s has no flow for %s after %d s" % (sw, self.group,
                                                                         timeout))

    def stop(self):
        """Stops the proxies; keeps their final counters by address."""
        for ip, p in self.servers.items():
            p.stop()
            self.tb.proxies.remove(p)
            self.counters[ip] = p.final_counters()
        return 0


def dump_flows(switch):
    return procs.ofctl("dump-flows", switch, check=False)


def edge_switch(tb, host_name):
    """The switch host `host_name` hangs off, from the links."""
    for link in tb.net.links:
        for a, b in ((link.intf1, link.intf2), (link.intf2, link.intf1)):
            if a.node.name == host_name:
                return b.node.name
    raise RuntimeError("%s has no link" % host_name)


def lldp_frames(tb):
    """{switch: n_packets of its LLDP flows}: the topology discovery's frames, which the switches'
    port counters count with the rest (every link end receives one now and then)."""
    out = {}
    for sw in tb.net.switches:
        out[sw.name] = sum(int(m.group(1)) for line in dump_flows(sw.name).splitlines()
                           if "0x88cc" in line
                           for m in [re.search(r"n_packets=(\d+)", line)] if m)
    return out


def switch_counts(tb):
    """({switch: frames its ports received, LLDP left out}, {switch: frames its ports sent},
    LLDP frames received in all), from harness.switch_port_counters and the LLDP flows. The
    frames sent include the controller's packet-outs, LLDP among them."""
    counters = harness.switch_port_counters(tb)
    lldp = lldp_frames(tb)
    return ({sw: counters[sw][0] - lldp.get(sw, 0) for sw in counters},
            {sw: counters[sw][1] for sw in counters}, sum(lldp.values()))


def count_deltas(before, after):
    """What happened between two switch_counts(): ({switch: frames received}, frames received,
    frames sent, LLDP frames left out)."""
    rx = {sw: after[0][sw] - before[0][sw] for sw in after[0]}
    return (rx, sum(rx.values()), sum(after[1][sw] - before[1][sw] for sw in after[1]),
            after[2] - before[2])


def per_switch(rx):
    return " ".join("%s:%d" % (sw, rx[sw]) for sw in sorted(rx, key=lambda s: int(s[1:])))


def warm_up(tb, system, host, server, topic, tree_hosts):
    """One short message from host number `host` through `server` on `topic`, before anything is
    counted: it takes every mode's whole way once (for the multicast mode, the proxy's first
    PUBLISH of the topic, which waits for the controller's REPLY, and the tree installed after
    it). Its 7-byte payload is too short for loadgen, which neither counts nor times it."""
    rc, out, err = tb.run(common.host_name(host),
                          ["mosquitto_pub", "-h", server, "-t", topic, "-m", "warm-up",
                           "-u", testbed.USER, "-P", testbed.PASSWORD], timeout=WARM_UP_S)
    if rc != 0:
        raise RuntimeError("warm-up publish failed: %s %s" % (out, err))
    if isinstance(system, MulticastSystem):
        system.wait_tree(tree_hosts)


def server_hosts(fanout):
    """The first host of every edge switch (testbed.TreeTopo numbers hosts left to right)."""
    return [k * fanout + 1 for k in range(fanout)]


def edge_server(host, fanout):
    """The server host on the same edge switch as host number `host`."""
    return (host - 1) // fanout * fanout + 1


class Load(harness.Experiment):
    name = "load"
    columns = ["hosts", "subscribers", "sent", "delivered", "loss_pct", "frames_rx", "frames_tx",
               "lldp_rx", "frames_per_delivered", "frames_per_published", "rx_per_switch"]
    metrics = ["frames_per_delivered", "frames_per_published", "loss_pct"]

    def points(self, args):
        fanouts = args.points or (QUICK_FANOUTS if args.quick else FANOUTS)
        return [harness.Point({"fanout": int(f)}, "fanout=%d (%d hosts)" % (f, f ** DEPTH),
                              {"depth": DEPTH, "fanout": int(f), "controller": "m2m"})
                for f in fanouts]

    def systems(self, args):
        modes = dict(MODES)
        wanted = args.modes or [k for k, _ in MODES]
        for m in wanted:
            if m not in modes:
                raise SystemExit("load: unknown mode %s (known: %s)" % (m, ", ".join(modes)))
        return [(k, label) for k, label in MODES if k in wanted]

    def seconds(self, args):
        return args.seconds or (QUICK_SECONDS if args.quick else SECONDS)

    def rate(self, args):
        return args.rate or RATE

    def config(self, args):
        from latency import broker_config  # pylint: disable=import-outside-toplevel
        return {"topology": "tree depth %d, fanout %s" % (DEPTH, [p.values["fanout"]
                                                                  for p in self.points(args)]),
                "depth": DEPTH, "fanout": [p.values["fanout"] for p in self.points(args)],
                "host_delay_ms": 0, "switch_delay_ms": 0,
                "rate_msgs_per_s": self.rate(args), "seconds_per_run": self.seconds(args),
                "payload_bytes": 64,
                "scenario": "servers on the first host of each edge switch; one subscriber on "
                            "every other host; publisher on the last host",
                "central_broker": "mosquitto on h1, every client connects to it",
                "unicast_peering": "mqtt_proxy on every server host, full mesh; clients connect "
                                   "to their edge switch's proxy",
                "multicast": "mqtt_proxy %s on every server host, no -F; clients connect to "
                             "their edge switch's proxy" % " ".join(M2M_PROXY_OPTIONS),
                "controller": "mininet/controller/mqtt2multicast.py --observe-links "
                              "(its default shortest-path L2) for every mode",
                "counted": "rx packets of every switch port (ovs-ofctl dump-ports) minus the "
                           "LLDP flows' n_packets, from before the publisher connects to %.1f s "
                           "after it disconnected" % SETTLE_S,
                "warm_up": "one 7-byte message on the run's topic before the window",
                "mosquitto_config": broker_config(args)}

    def start_system(self, tb, mode, fanout, workdir, args):
        """(system, the server address each host's clients use)."""
        from latency import broker_config  # pylint: disable=import-outside-toplevel
        if mode == "broker":
            return (common.MosquittoSystem(tb, workdir, [1], broker_config(args)),
                    lambda host: testbed.host_ip(1))
        if mode == "unicast":
            return (common.ProxySystem(tb, server_hosts(fanout)),
                    lambda host: testbed.host_ip(edge_server(host, fanout)))
        if mode == "multicast":
            return (MulticastSystem(tb, server_hosts(fanout)),
                    lambda host: testbed.host_ip(edge_server(host, fanout)))
        raise ValueError(mode)

    def measure(self, tb, mode, point, rep, args, workdir):
        fanout = point.values["fanout"]
        hosts = fanout ** DEPTH
        servers = server_hosts(fanout)
        clients = [i for i in range(1, hosts + 1) if i not in servers]
        publisher = hosts
        seconds = self.seconds(args)
        topic = "bench/exp/load/%d/%s/%d" % (fanout, mode, rep)
        system, server_of = self.start_system(tb, mode, fanout, workdir, args)
        try:
            with harness.RunProcesses(tb):
                subs = [common.start_subscriber(tb, args.loadgen, common.host_name(i),
                                                server_of(i), topic, 1, seconds + 6,
                                                "load%d-%d" % (rep, i))
                        for i in clients]
                system.wait_subscribed(topic, sorted({server_of(i) for i in clients}),
                                       server_of(publisher))
                warm_up(tb, system, publisher, server_of(publisher), topic, servers)
                before = switch_counts(tb)
                pub = common.start_publisher(tb, args.publisher, common.host_name(publisher),
                                             server_of(publisher), topic, 1, self.rate(args),
                                             seconds, 1)
                published = common.client_result(pub, seconds + 60)
                time.sleep(SETTLE_S)  # part of the measurement window, not a barrier
                after = switch_counts(tb)
                got = [common.client_result(s, seconds + 60) for s in subs]
        finally:
            system.stop()
        sent = published["sent"]
        delivered = sum(g["received"] for g in got)
        rx, frames_rx, frames_tx, lldp = count_deltas(before, after)
        expected = sent * len(clients)
        return {
            "hosts": hosts, "subscribers": len(clients), "sent": sent, "delivered": delivered,
            "loss_pct": 100.0 * (expected - delivered) / expected if expected else 0.0,
            "frames_rx": frames_rx, "frames_tx": frames_tx, "lldp_rx": lldp,
            "frames_per_delivered": frames_rx / delivered if delivered else float("nan"),
            "frames_per_published": frames_rx / sent if sent else float("nan"),
            "rx_per_switch": per_switch(rx),
        }

    def check(self, row):
        return None if row["delivered"] else "nothing delivered (%d sent)" % row["sent"]

    def describe(self, row):
        return ("%d/%d delivered to %d subscribers, %d frames: %.2f per delivered message, %.2f "
                "per published" % (row["delivered"], row["sent"] * row["subscribers"],
                                   row["subscribers"], row["frames_rx"],
                                   row["frames_per_delivered"], row["frames_per_published"]))

    def plot(self, plt, summary, args, path):
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        colors = COLORS
        for ax, metric, ylabel in ((axes[0], "frames_per_delivered",
                                    "switch frames per delivered message"),
                                   (axes[1], "frames_per_published",
                                    "switch frames per published message")):
            for key, label in self.systems(args):
                xs, med, lo, hi = harness.series(summary, "fanout", key, metric)
                if xs:
                    ax.errorbar(xs, med, yerr=[lo, hi], fmt="o-", color=colors.get(key),
                                capsize=3, label=label)
            fanouts = sorted({r["fanout"] for r in summary})
            ax.set_xticks(fanouts)
            ax.set_xticklabels(["%d\n(%d hosts)" % (f, f ** DEPTH) for f in fanouts])
            ax.set_xlabel("fanout (depth %d)" % DEPTH)
            ax.set_ylabel(ylabel)
            ax.set_ylim(bottom=0)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle("Network load against tree size (median of %d run%s, bars: min-max)"
                     % (args.reps, "" if args.reps == 1 else "s"), fontsize=10)
        fig.savefig(path, dpi=120, bbox_inches="tight")

    def print_summary(self, summary):
        harness.print_table(summary, "fanout", [("frames_per_delivered", "%.2f"),
                                                ("frames_per_published", "%.2f"),
                                                ("loss_pct", "%.1f")], MODES)
