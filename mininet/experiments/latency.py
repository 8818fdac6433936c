"""Latency: publisher to subscriber, per message, against the one-way delay of the host links; a
central broker against edge proxies. The prototype's first figure (mqtt2multicast.md 4.6, item 1)
on this project's testbed and with its proxy.

Scenario (the reference tree, depth 2, fanout 2: h1, h2 on s2; h3, h4 on s3), every host link
delayed by D ms one way (switch links by --switch-delay, 0 by default):
  central broker  Mosquitto on h1; the subscriber on h2 and the publisher on h3 both connect to it.
                  A message crosses h3 -> h1 -> h2: four host links, 4 D.
  edge proxies    mqtt_proxy on h1 and h4, each the other's peer (bench's ProxySystem: the README's
                  launch line); the subscriber on h2 connects to h1, the publisher on h3 to h4.
                  A message crosses h3 -> h4 -> h1 -> h2: six host links, 6 D.
The clients are bench's: one build/bench/loadgen subscriber, one build/bench/mosq_pub publisher
(libmosquitto, TCP_NODELAY) at a steady rate (see "Rate" below). The publisher puts its send time
(CLOCK_REALTIME; the hosts share the machine's clock) in each payload and the subscriber takes
the difference on arrival, so a run gives the latency of every message: its median and p99 go in
the CSV. The publisher connects once the subscription reached the publisher's server (for the
proxies, h4 logged h1's peer SUBSCRIBE), so no message is published before it can be delivered.

Mosquitto runs with set_tcp_nodelay true (--mosquitto-nagle: its default, false): with Nagle on,
a message waits for the ACK of the one before whenever the round trip (4 D between h1 and h2) is
longer than the time between messages, which at the rates below is the case from 10 ms on, and
the figure would measure the broker's socket option instead of the path. The proxy writes every
segment at once.

Rate: sparse, as the prototype's sensors (one message every few seconds): at most 50 msgs/s and
at most one message per 4 (D + S) (D, S: the host and switch link delays; 5/s at 50 ms, 0.25/s at
1000 ms), for at least 8 s and at least 50 messages (quick: 2 s, 20 messages); --rate and
--seconds fix them instead. Why: without netem the testbed holds some packets at their sender
for the whole path's delay (what a client sends to its MQTT server, docs/testbed-delay.md), and
a TCP socket's packets count against its TCP Small Queues budget until they are released, which
lets only a packet or two be held per socket: a segment written beyond that waits for a release,
and messages every 2 D or faster queue behind each other at the publisher. Measured with the
central broker while the testbed still held every packet at its sender: at 50 msgs/s and
D = 50 ms, 300 messages left h3 in 124 segments and the median was 25 ms above the floor per TCP
leg; at one message per 2 D the median was still 10-16 ms above the floor for every D from 10 to
250 ms; at one per 4 D it is on the floor (D = 50 ms: 201.6 ms against 201.5). netem releases
the socket's budget when it queues a packet, so real and netem links do not do this.

The network floor of each system (the median ping round trips of its legs, halved, summed) is
measured once per point and goes in the CSV: no server can deliver faster than the links allow.
"""

import harness
from harness import common, testbed

H1, H2, H4 = testbed.host_ip(1), testbed.host_ip(2), testbed.host_ip(4)
DELAYS_MS = [0, 10, 50, 100, 250, 500, 1000]
QUICK_DELAYS_MS = [0, 50]
SYSTEMS = [("broker", "central broker"), ("proxies", "edge proxies")]
# The legs each system's messages cross: (host the ping starts from, address it goes to).
LEGS = {"broker": [("h3", H1), ("h1", H2)],
        "proxies": [("h3", H4), ("h4", H1), ("h1", H2)]}
RATE = 50  # msgs/s at most: each message its own segment
SPARSE = 0.25  # msgs/s times the one-way delay in s (host + switch link), at most: see above
SECONDS, QUICK_SECONDS = 8.0, 2.0  # per run, at least
MESSAGES, QUICK_MESSAGES = 50, 20  # per run, at least (the prototype sent 50)
BELOW_FLOOR = 0.9  # a median under 90% of the floor is warned about


class Latency(harness.Experiment):
    name = "latency"
    columns = ["rate_msgs_per_s", "sent", "received", "loss_pct", "duplicates", "gaps", "p50_ms",
               "p90_ms", "p99_ms", "max_ms", "floor_ms", "retransmits"]
    metrics = ["p50_ms", "p99_ms", "max_ms", "loss_pct", "floor_ms"]

    def __init__(self):
        self.floor = {}

    def points(self, args):
        delays = args.points or (QUICK_DELAYS_MS if args.quick else DELAYS_MS)
        return [harness.Point({"delay_ms": d}, "delay=%gms" % d,
                              {"depth": 2, "fanout": 2, "host_delay_ms": d,
                               "switch_delay_ms": args.switch_delay})
                for d in delays]

    def systems(self, args):
        return SYSTEMS

    def rate(self, args, delay_ms):
        if args.rate:
            return args.rate
        delay_ms += args.switch_delay
        return min(RATE, SPARSE * 1000.0 / delay_ms) if delay_ms else RATE

    def seconds(self, args, delay_ms):
        if args.seconds:
            return args.seconds
        least, messages = (QUICK_SECONDS, QUICK_MESSAGES) if args.quick else (SECONDS, MESSAGES)
        return max(least, messages / self.rate(args, delay_ms))

    def config(self, args):
        delays = [p.values["delay_ms"] for p in self.points(args)]
        return {"topology": "tree depth 2 fanout 2 (h1,h2 on s2; h3,h4 on s3)",
                "depth": 2, "fanout": 2,
                "host_delay_ms": delays,
                "switch_delay_ms": args.switch_delay,
                "rate_msgs_per_s": {str(d): self.rate(args, d) for d in delays},
                "seconds_per_run": {str(d): self.seconds(args, d) for d in delays},
                "payload_bytes": 64,
                "central_broker": "mosquitto on h1, subscriber h2, publisher h3",
                "edge_proxies": "mqtt_proxy on h1 and h4 peered, subscriber h2 -> h1, "
                                "publisher h3 -> h4",
                "mosquitto_config": broker_config(args),
                "proxy_options": "defaults (bench ProxySystem: -u/-p, -F peer)"}

    def at_point(self, tb, point, args):
        # Pinging across a delayed leg takes 10 round trips' worth of patience; the floor is the
        # same for every repetition, so once per point is enough.
        self.floor = {key: sum(harness.one_way_ms(tb, src, dst) for src, dst in legs)
                      for key, legs in LEGS.items()}
        print("  network floor: %s" % ", ".join("%s %.2f ms" % (k, v)
                                                 for k, v in self.floor.items()), flush=True)
        return {}

    def measure(self, tb, system_key, point, rep, args, workdir):
        delay_s = (point.values["delay_ms"] * 1.0 + args.switch_delay) / 1000.0
        rate = self.rate(args, point.values["delay_ms"])
        seconds = self.seconds(args, point.values["delay_ms"])
        topic = "bench/exp/latency/%s/%s/%d" % (point.values["delay_ms"], system_key, rep)
        # After the subscriber is ready: the peer SUBSCRIBE (2 D), the publisher's handshake and
        # CONNECT (8 D, and SYN retransmissions while the round trip exceeds the 1 s initial
        # timeout), the run, the last message's way (6 D). The subscriber listens that long.
        margin = 4.0 + 16 * delay_s
        if system_key == "broker":
            system = common.MosquittoSystem(tb, workdir, [1], broker_config(args))
            pub_server = H1
        else:
            system = common.ProxySystem(tb, (1, 4))
            pub_server = H4
        retransmits = 0
        try:
            with harness.RunProcesses(tb):
                sub = common.start_subscriber(tb, args.loadgen, "h2", H1, topic, 1,
                                              seconds + margin, "lat%d" % rep)
                system.wait_subscribed(topic, [H1], pub_server, timeout=10 + 4 * delay_s)
                pub = common.start_publisher(tb, args.publisher, "h3", pub_server, topic, 1,
                                             rate, seconds, 1)
                published = common.client_result(pub, seconds + 60 + margin)
                got = common.client_result(sub, seconds + 60 + margin)
        finally:
            retransmits = system.stop()
        sent = published["sent"]
        return {
            "rate_msgs_per_s": rate, "sent": sent, "received": got["received"],
            "loss_pct": 100.0 * (sent - got["received"]) / sent if sent else 0.0,
            "duplicates": got["duplicates"], "gaps": got["gaps"],
            "p50_ms": got["p50_us"] / 1000.0, "p90_ms": got["p90_us"] / 1000.0,
            "p99_ms": got["p99_us"] / 1000.0, "max_ms": got["max_us"] / 1000.0,
            "floor_ms": self.floor[system_key], "retransmits": retransmits,
        }

    def check(self, row):
        return None if row["received"] else "nothing received (%d sent)" % row["sent"]

    def describe(self, row):
        line = ("%d/%d received, p50 %.2f ms, p99 %.2f ms (floor %.2f ms)"
                % (row["received"], row["sent"], row["p50_ms"], row["p99_ms"], row["floor_ms"]))
        if row["p50_ms"] < BELOW_FLOOR * row["floor_ms"]:
            # Faster than the pings over the same legs: some of the system's packets skipped
            # the emulated delay (or the pings were slowed by something else).
            line += "; WARNING: median below the network floor"
        return line

    def plot(self, plt, summary, args, path):
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        colors = {"broker": "tab:blue", "proxies": "tab:orange"}
        handles = []  # in this order in the legend (matplotlib would put the plain lines first)
        for key, label in SYSTEMS:
            for metric, style, name in (("p50_ms", "o-", "median"), ("p99_ms", "s--", "p99")):
                xs, med, lo, hi = harness.series(summary, "delay_ms", key, metric)
                if xs:
                    handles.append(ax.errorbar(xs, med, yerr=[lo, hi], fmt=style,
                                               color=colors[key], capsize=3,
                                               label="%s, %s" % (label, name),
                                               alpha=1.0 if metric == "p50_ms" else 0.6))
            xs, med, _, _ = harness.series(summary, "delay_ms", key, "floor_ms")
            if xs:
                handles += ax.plot(xs, med, ":", color=colors[key], linewidth=1,
                                   label="%s, network floor (ping)" % label)
        ax.set_xscale("symlog", linthresh=10)
        ax.set_yscale("log")
        ax.set_xlabel("one-way delay per host link (ms)")
        ax.set_ylabel("publisher-to-subscriber latency (ms)")
        reps = args.reps
        ax.set_title("Latency against link delay (median of %d run%s, bars: min-max)"
                     % (reps, "" if reps == 1 else "s"), fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(handles=handles, fontsize=8)
        fig.savefig(path, dpi=120, bbox_inches="tight")

    def print_summary(self, summary):
        harness.print_table(summary, "delay_ms", [("p50_ms", "%.2f"), ("p99_ms", "%.2f"),
                                                  ("loss_pct", "%.1f"), ("floor_ms", "%.2f")],
                            SYSTEMS)


def broker_config(args):
    """compare.py's Mosquitto configuration (bench/compare.py MOSQUITTO), with Nagle off unless
    --mosquitto-nagle (the module docstring says why)."""
    import compare  # pylint: disable=import-outside-toplevel  (bench/compare.py)
    return compare.MOSQUITTO + ("" if args.mosquitto_nagle else "set_tcp_nodelay true\n")
