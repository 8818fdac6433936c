"""Network load: frames on the switch ports per delivered message as the tree grows; a central
broker against unicast peering. The prototype's second figure (mqtt2multicast.md 4.6, item 2),
whose third mode, multicast, comes with a later change (see MODES).

Scenario: a tree of depth 2 and fanout F (F = 2, 3, 4: 4, 9, 16 hosts; F edge switches of F hosts
each). The first host of each edge switch (h1, h(F+1), ...) is a server host; every other host
runs one subscriber (build/bench/loadgen), F (F - 1) in all, and the last host h(F*F) also runs
the publisher (build/bench/mosq_pub) at --rate msgs/s for --seconds. The same clients on the same
hosts in every mode; only where they connect differs:
  central broker   Mosquitto on h1 (the other server hosts idle); every client connects to h1.
  unicast peering  mqtt_proxy on every server host, all peered in a full mesh (bench's
                   ProxySystem); each client connects to the proxy of its own edge switch, so the
                   publisher's proxy sends each message once to each of the F - 1 other proxies.
Clients cannot share a host with the proxy: a client on the proxy's host would reach it through
the loopback interface, where the proxy does not capture.

Counted: the frames the switches' ports received (OpenFlow port statistics, ovs-ofctl dump-ports;
a frame counts once per switch it enters, TCP ACKs, the peers' credit messages and everything else
included), from just before the publisher connects until 1 s after it disconnected, divided by
the messages delivered (the copies all subscribers received together). The frames sent by the
ports are in the CSV too, and the received frames per switch.
"""

import time

import harness
from harness import common, testbed

FANOUTS, QUICK_FANOUTS = [2, 3, 4], [2]
DEPTH = 2
# The modes, in the order of the plot. MULTICAST: the third mode, proxies publishing to a
# multicast group per topic over the trees the controller installs, comes with the multicast
# change: add ("multicast", "multicast") here and its branch in Load.start_system. Until then it
# is not measured, and asking for it is an error, not a copy of another mode.
MODES = [("broker", "central broker"), ("unicast", "unicast peering")]
FUTURE_MODES = {"multicast": "multicast"}
RATE = 100  # msgs/s: a sensor-like pace, each message its own segment
SECONDS, QUICK_SECONDS = 5.0, 2.0
SETTLE_S = 1.0  # after the publisher disconnected: the last messages reach every subscriber


def server_hosts(fanout):
    """The first host of every edge switch (testbed.TreeTopo numbers hosts left to right)."""
    return [k * fanout + 1 for k in range(fanout)]


def edge_server(host, fanout):
    """The server host on the same edge switch as host number `host`."""
    return (host - 1) // fanout * fanout + 1


class Load(harness.Experiment):
    name = "load"
    columns = ["hosts", "subscribers", "sent", "delivered", "loss_pct", "frames_rx", "frames_tx",
               "frames_per_delivered", "frames_per_published", "rx_per_switch"]
    metrics = ["frames_per_delivered", "frames_per_published", "loss_pct"]

    def points(self, args):
        fanouts = args.points or (QUICK_FANOUTS if args.quick else FANOUTS)
        return [harness.Point({"fanout": int(f)}, "fanout=%d (%d hosts)" % (f, f ** DEPTH),
                              {"depth": DEPTH, "fanout": int(f)})
                for f in fanouts]

    def systems(self, args):
        modes = dict(MODES)
        wanted = args.modes or [k for k, _ in MODES]
        for m in wanted:
            if m in FUTURE_MODES:
                raise SystemExit("load: mode %s is not implemented yet (it comes with the "
                                 "multicast change)" % m)
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
                "counted": "rx packets of every switch port (ovs-ofctl dump-ports), from before "
                           "the publisher connects to %.1f s after it disconnected" % SETTLE_S,
                "mosquitto_config": broker_config(args),
                "modes_not_measured": sorted(FUTURE_MODES)}

    def start_system(self, tb, mode, fanout, workdir, args):
        """(system, the server address each host's clients use)."""
        from latency import broker_config  # pylint: disable=import-outside-toplevel
        if mode == "broker":
            return (common.MosquittoSystem(tb, workdir, [1], broker_config(args)),
                    lambda host: testbed.host_ip(1))
        if mode == "unicast":
            return (common.ProxySystem(tb, server_hosts(fanout)),
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
                before = harness.switch_port_counters(tb)
                pub = common.start_publisher(tb, args.publisher, common.host_name(publisher),
                                             server_of(publisher), topic, 1, self.rate(args),
                                             seconds, 1)
                published = common.client_result(pub, seconds + 60)
                time.sleep(SETTLE_S)  # part of the measurement window, not a barrier
                after = harness.switch_port_counters(tb)
                got = [common.client_result(s, seconds + 60) for s in subs]
        finally:
            system.stop()
        sent = published["sent"]
        delivered = sum(g["received"] for g in got)
        rx = {sw: after[sw][0] - before[sw][0] for sw in after}
        frames_rx = sum(rx.values())
        frames_tx = sum(after[sw][1] - before[sw][1] for sw in after)
        expected = sent * len(clients)
        return {
            "hosts": hosts, "subscribers": len(clients), "sent": sent, "delivered": delivered,
            "loss_pct": 100.0 * (expected - delivered) / expected if expected else 0.0,
            "frames_rx": frames_rx, "frames_tx": frames_tx,
            "frames_per_delivered": frames_rx / delivered if delivered else float("nan"),
            "frames_per_published": frames_rx / sent if sent else float("nan"),
            "rx_per_switch": " ".join("%s:%d" % (sw, rx[sw]) for sw in sorted(rx, key=lambda s:
                                                                               int(s[1:]))),
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
        colors = {"broker": "tab:blue", "unicast": "tab:orange", "multicast": "tab:green"}
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
