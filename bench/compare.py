#!/usr/bin/python3
"""mqtt_proxy against two bridged Mosquitto brokers, in the reference testbed, in the same run.

Systems under test, in turn, with the same clients (MQTT 3.1.1 QoS 0):
  mqtt_proxy  on h1 and h4, each the other's peer, started with no options but -F: the defaults
              (the peer protocol's extension, batching and backpressure); --proxy-extra adds some
  mosquitto   on h1 and h4, h4 bridged to h1 over TCP (topic bench/# both ways, QoS 0).
Publishers are build/bench/mosq_pub (libmosquitto, TCP_NODELAY, a new PUBLISH whenever the library
has written the last: at least as hard on the server as a stock client) on h3, connected to h4;
subscribers are build/bench/loadgen on h2, connected to h1, unless noted:
  latency-R   one publisher at R msgs/s for --seconds (at least 400 messages); one subscriber:
              delivered, loss, one-way latency p50/p90/p99/max (send time in the payload; the
              hosts share a clock)
  flat-1/4    1 or 4 publisher connections flat out: delivered msgs/s and loss
  stuck       one publisher at 20k msgs/s; two subscribers via h1, one stopped with SIGSTOP once
              subscribed: what the healthy one receives (and the stopped one, once continued)
  fanout      one publisher at 10k msgs/s; 8 subscribers, 4 via h1 and 4 via h4 (on h3)
  idle        --idle clients connected and subscribed to h1 only: RSS growth per connection,
              CPU use of the servers while they sit idle
Loss is counted against what the publishers' applications published, per subscriber.
The network floor (the ping round trips of the three legs a message crosses, halved) is measured
once per repetition: no system can deliver faster.
For every scenario: CPU seconds per 10k delivered messages of both servers, of ovs-vswitchd (the
userspace switches) and of the load generators; frames the switch ports received per delivered
message; peak RSS.
A publisher starts once the subscriptions reached the far side: for the proxies, the publishers'
proxy logged the peer SUBSCRIBE; the bridge carries bench/# both ways from its start, which a probe
message each way checks before the first scenario.
Each figure is the median of --repeat runs; the table gives the ratios mqtt_proxy / mosquitto.
Writes CSV (and a latency plot when python3-matplotlib is installed) next to --out.
"""

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
from functools import partial
import time

import common  # first: it puts mininet/ on sys.path
import stats
import testbed

REPO = common.REPO
H1, H2, H4 = testbed.host_ip(1), testbed.host_ip(2), testbed.host_ip(4)
SERVERS = (1, 4)  # the proxies or brokers run on h1 and h4
MOSQUITTO = ("listener 1883 0.0.0.0\nallow_anonymous true\nuser root\nmax_connections -1\n"
             "log_dest stderr\nlog_type error\nmax_queued_messages 100000\n")
# The systems under test, in the order of the table; the last is the reference of the ratios.
# The proxies log at info level (their default): a line per connection and subscription, none per
# message. The barrier before publishing reads their peer SUBSCRIBE lines.
def systems(proxy_extra):
    return [
        ("mqtt_proxy", lambda tb, work: common.ProxySystem(tb, SERVERS, proxy_extra)),
        # h4 bridged to h1; it returns once the bridge carries messages both ways.
        ("mosquitto", lambda tb, work: common.MosquittoSystem(tb, work, SERVERS, MOSQUITTO,
                                                              bridge=(4, 1))),
    ]
# The idle figures: RSS a second after the last SUBACK, CPU over the 5 s after that.
IDLE_SETTLE_S, IDLE_WINDOW_S = 1.0, 5.0


class Bench:
    def __init__(self, tb, args):
        self.tb = tb
        self.stats = stats.process_stats
        self.switch_stats = stats.switch_stats
        self.args = args
        self.loadgen = args.loadgen
        self.publisher = args.publisher
        # 10,000 idle clients per run leave 10,000 TIME-WAIT ports for a minute; the default
        # range (28k ports) would run out when runs follow each other closely (--only idle).
        for host in ("h2", "h3"):
            tb.run(host, ["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=10000 65000"])

    def sub(self, host, broker, topic, clients, seconds, tag):
        return common.start_subscriber(self.tb, self.loadgen, host, broker, topic, clients,
                                       seconds, tag)

    def pub(self, host, broker, topic, clients, rate, seconds, publisher):
        return common.start_publisher(self.tb, self.publisher, host, broker, topic, clients, rate,
                                      seconds, publisher)

    result = staticmethod(common.client_result)

    def scenario(self, system, topic, rate, pub_clients, subs, seconds, stopped=()):
        """subs: list of (host, broker, clients); the subscriber processes whose index is in
        `stopped` get SIGSTOP once subscribed and SIGCONT after the healthy ones reported. Returns
        the figures of one run; "loss_pct" is the healthy subscribers'."""
        before = [self.stats(pid) for pid in system.pids]
        switch_before = self.switch_stats()
        s = [self.sub(h, b, topic, n, seconds + 4, "s%d" % i) for i, (h, b, n) in enumerate(subs)]
        system.wait_subscribed(topic, [b for _, b, _ in subs], H4)  # they reach the far side
        for i in stopped:
            s[i].send_signal(signal.SIGSTOP)
        p = self.pub("h3", H4, topic, pub_clients, rate, seconds, 1)
        published = self.result(p, seconds + 60)
        sent = published["sent"]
        healthy = [i for i in range(len(subs)) if i not in stopped]
        got = {i: self.result(s[i], seconds + 60) for i in healthy}
        for i in stopped:
            s[i].send_signal(signal.SIGCONT)
            got[i] = self.result(s[i], 60)
        stuck_got = [got[i] for i in stopped]
        got = [got[i] for i in healthy]
        subs = [subs[i] for i in healthy]
        after = [self.stats(pid) for pid in system.pids]
        switch_after = self.switch_stats()
        expected = sent * sum(n for _, _, n in subs)
        delivered = sum(g["received"] for g in got)
        cpu = sum(a[0] - b[0] for a, b in zip(after, before))
        first = got[0]
        clients_cpu = published["cpu_s"] + sum(g["cpu_s"] for g in got)

        def per_10k(x):
            return 10000.0 * x / delivered if delivered else float("nan")

        def loss_pct(received, clients=1):
            return 100.0 * (sent * clients - received) / (sent * clients) if sent else 0.0

        figures = {}
        if stuck_got:
            figures["stopped_loss_pct"] = loss_pct(sum(g["received"] for g in stuck_got),
                                                   len(stuck_got))
        # The subscriber that lost most: a fair share for all is not the point, none losing is.
        figures["worst_sub_loss_pct"] = max(loss_pct(g["received"], n)
                                            for g, (_, _, n) in zip(got, subs))
        return dict(figures, **{
            "sent": sent,
            "delivered": delivered,
            "loss_pct": 100.0 * (expected - delivered) / expected if expected else 0.0,
            "msgs_per_s": delivered / seconds,
            "p50_us": first["p50_us"], "p90_us": first["p90_us"], "p99_us": first["p99_us"],
            "max_us": first["max_us"],
            "cpu_s_per_10k": per_10k(cpu),
            "switch_cpu_per_10k": per_10k(switch_after[0] - switch_before[0]),
            "client_cpu_per_10k": per_10k(clients_cpu),
            "switch_frames_per_msg": per_10k(switch_after[1] - switch_before[1]) / 10000.0,
            "peak_rss_kib": max(a[2] for a in after),
        })

    def network_floor_us(self):
        """One-way time the network alone takes over the three legs a message crosses (h3 to h4,
        h4 to h1, h1 to h2): the median ping round trip of each, halved, summed. No system under
        test can deliver faster than this."""
        total = 0.0
        for src, dst in (("h3", H4), ("h4", H1), ("h1", H2)):
            _, out, _ = self.tb.run(src, ["ping", "-n", "-c", "40", "-i", "0.05", dst], timeout=20)
            rtts = [float(w.split("=")[1]) for w in out.split() if w.startswith("time=")]
            if not rtts:
                raise RuntimeError("ping %s -> %s: no replies" % (src, dst))
            total += 1000.0 * statistics.median(rtts) / 2
        return total

    def idle(self, system, clients):
        before = [self.stats(pid) for pid in system.pids]
        s = self.sub("h2", H1, "bench/idle", clients, 12, "idle")
        time.sleep(IDLE_SETTLE_S)  # part of the measurement, not a barrier
        mid = [self.stats(pid) for pid in system.pids]
        time.sleep(IDLE_WINDOW_S)  # the measurement
        end = [self.stats(pid) for pid in system.pids]
        self.result(s, 30)
        return {
            "rss_per_conn_b": 1024.0 * (mid[0][1] - before[0][1]) / clients,
            "idle_cpu_pct": 100.0 * sum(e[0] - m[0] for e, m in zip(end, mid)) / IDLE_WINDOW_S,
            "peak_rss_kib": max(e[2] for e in end),
        }

    def run_system(self, system):
        a = self.args
        todo = {}
        for rate in a.rates:
            # At least 400 messages, so that p99 is not simply the largest of a hundred.
            todo["latency-%d" % rate] = partial(self.scenario, system, "bench/lat/%d" % rate, rate,
                                                1, [("h2", H1, 1)], max(a.seconds, 400.0 / rate))
        todo["flat-1"] = partial(self.scenario, system, "bench/flat1", 0, 1, [("h2", H1, 1)],
                                 a.seconds)
        todo["flat-4"] = partial(self.scenario, system, "bench/flat4", 0, 4, [("h2", H1, 1)],
                                 a.seconds)
        todo["stuck"] = partial(self.scenario, system, "bench/stuck", 20000, 1,
                                [("h2", H1, 1), ("h2", H1, 1)], a.seconds, stopped=(1,))
        todo["fanout"] = partial(self.scenario, system, "bench/fan", 10000, 1,
                                 [("h2", H1, 4), ("h3", H4, 4)], a.seconds)
        todo["idle"] = partial(self.idle, system, a.idle)
        return {name: run() for name, run in todo.items() if not a.only or name in a.only}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", default=os.path.join(REPO, "build", "mqtt_proxy"))
    ap.add_argument("--loadgen", default=os.path.join(REPO, "build", "bench", "loadgen"),
                    help="the subscribers (and the idle clients)")
    ap.add_argument("--publisher", default=os.path.join(REPO, "build", "bench", "mosq_pub"),
                    help="the publishers: a program with mosq_pub's options and output")
    ap.add_argument("--proxy-extra", nargs="*", default=[], metavar="OPTION",
                    help="options for the proxies beside -F (none: the defaults are measured)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rates", type=int, nargs="+", default=[20, 1000, 10000, 50000])
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--only", nargs="+", metavar="SCENARIO",
                    help="run only these scenarios (latency-R, flat-1, flat-4, stuck, fanout, "
                         "idle)")
    ap.add_argument("--out", default=os.path.join(REPO, "build", "bench", "compare.csv"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("compare: needs root", file=sys.stderr)
        return 1

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    per_system = {}
    floors = []
    with tempfile.TemporaryDirectory() as work, \
            testbed.Testbed(os.path.join(os.path.dirname(args.out), "artifacts"),
                            proxy_binary=args.proxy) as tb:
        bench = Bench(tb, args)
        for rep in range(args.repeat):
            floors.append(bench.network_floor_us())
            for name, start in systems(args.proxy_extra):
                system = start(tb, work)
                try:
                    runs = bench.run_system(system)
                finally:
                    system.stop()
                    common.wait_tcp_closed(tb, (1, 2, 3, 4))  # nothing of it left in flight
                print("%s run %d: %s" % (name, rep, json.dumps(runs)), flush=True)
                per_system.setdefault(name, []).append(runs)

    # Medians per scenario and figure.
    med = {name: common.medians(reps) for name, reps in per_system.items()}
    names = [name for name, _ in systems(args.proxy_extra)]
    ref = med["mosquitto"]
    rows = common.ratio_rows(med, names, "mosquitto", [(sc, k) for sc in ref for k in ref[sc]])
    print("\nmedians of %d runs; ratio = mqtt_proxy / mosquitto-bridge; mqtt_proxy options: %s"
          % (args.repeat, " ".join(args.proxy_extra) or "(defaults)"))
    common.print_table([("scenario", -12), ("figure", -22), (names[0], 12), (names[1], 12),
                        ("ratio", 7)], rows)
    floor = statistics.median(floors)
    common.write_csv(args.out, ["scenario", "figure"] + names + ["ratio"],
                     rows + [["network", "floor_one_way_us"] + [floor] * len(names)])
    print("network floor: %.0f us one way (ping over the three legs, median of %d runs)"
          % (floor, len(floors)))
    print("csv: %s" % args.out)
    if any("latency-%d" % r not in med["mqtt_proxy"] for r in args.rates):
        print("plot: skipped (not every latency scenario ran)")
        return 0
    try:
        import matplotlib  # pylint: disable=import-outside-toplevel
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, style in (("mqtt_proxy", "o-"), ("mosquitto", "s--")):
            for q in ("p50_us", "p99_us"):
                ys = [med[name]["latency-%d" % r][q] / 1000.0 for r in args.rates]
                ax.plot(args.rates, ys, style, label="%s %s" % (name, q[:3]))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("publish rate (msgs/s)")
        ax.set_ylabel("one-way latency (ms)")
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
        plot = os.path.splitext(args.out)[0] + ".png"
        fig.savefig(plot, dpi=120, bbox_inches="tight")
        print("plot: %s" % plot)
    except ImportError:
        print("plot: skipped (python3-matplotlib is not installed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
