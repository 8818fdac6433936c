#!/usr/bin/python3
"""mqtt_proxy against two bridged Mosquitto brokers, in the reference testbed, in the same run.

Systems under test, in turn, with the same clients (build/bench/loadgen, MQTT 3.1.1 QoS 0):
  mqtt_proxy  on h1 and h4, each the other's peer;
  mosquitto   on h1 and h4, h4 bridged to h1 over TCP (topic bench/# both ways, QoS 0).
Publishers run on h3 and connect to h4; subscribers run on h2 and connect to h1, unless noted:
  latency-R   one publisher at R msgs/s for --seconds; one subscriber: delivered, loss, one-way
              latency p50/p90/p99/max (send time in the payload; the hosts share a clock)
  flat-1/4    1 or 4 publisher connections flat out: delivered msgs/s and loss
  fanout      one publisher at 10k msgs/s; 8 subscribers, 4 via h1 and 4 via h4 (on h3)
  idle        --idle clients connected and subscribed to h1 only: RSS growth per connection,
              CPU use of the servers while they sit idle
For every scenario: CPU seconds of both servers per 10k delivered messages, and peak RSS.
Each figure is the median of --repeat runs; the table gives the ratio mqtt_proxy / mosquitto.
Writes CSV (and a latency plot when python3-matplotlib is installed) next to --out.
"""

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "mininet"))

H1, H4 = "192.168.1.101", "192.168.1.104"


class ProxySystem:
    name = "mqtt_proxy"

    def __init__(self, tb, testbed, work):
        self.tb = tb
        self.servers = [tb.start_proxy("h1", peers=[H4], extra=["--log-level", "warn"]),
                        tb.start_proxy("h4", peers=[H1], extra=["--log-level", "warn"])]
        self.pids = [p.proc.pid for p in self.servers]

    def stop(self):
        for p in self.servers:
            p.stop()
            self.tb.proxies.remove(p)


class BridgeSystem:
    name = "mosquitto"

    def __init__(self, tb, testbed, work):
        common = ("listener 1883 0.0.0.0\nallow_anonymous true\nuser root\nmax_connections -1\n"
                  "log_dest stderr\nlog_type error\nmax_queued_messages 100000\n")
        bridge = ("connection h4-to-h1\naddress %s:1883\ntopic bench/# both 0\n"
                  "cleansession true\nbridge_protocol_version mqttv311\n" % H1)
        self.brokers = [testbed.Mosquitto(tb.host("h1"), common, work),
                        testbed.Mosquitto(tb.host("h4"), common + bridge, work)]
        self.pids = [b.pid for b in self.brokers]
        time.sleep(1.5)  # the bridge connects and subscribes

    def stop(self):
        for b in self.brokers:
            b.stop()


class Bench:
    def __init__(self, tb, testbed, args):
        self.tb = tb
        self.stats = testbed.process_stats
        self.auth = ["--user", testbed.USER, "--password", testbed.PASSWORD]
        self.args = args
        self.loadgen = args.loadgen

    def sub(self, host, broker, topic, clients, seconds, tag):
        p = self.tb.popen(host, [self.loadgen, "sub", "--host", broker, "--topic", topic,
                                 "--clients", str(clients), "--duration", str(seconds),
                                 "--id", tag] + self.auth)
        line = p.stdout.readline().decode()
        if line.strip() != "ready":
            raise RuntimeError("subscriber: %s %s" % (line, p.stderr.read().decode()))
        return p

    def pub(self, host, broker, topic, clients, rate, seconds, publisher):
        return self.tb.popen(host, [self.loadgen, "pub", "--host", broker, "--topic", topic,
                                    "--clients", str(clients), "--rate", str(rate),
                                    "--duration", str(seconds), "--publisher", str(publisher),
                                    "--id", "p%d" % publisher] + self.auth)

    @staticmethod
    def result(p, timeout):
        out, err = p.communicate(timeout=timeout)
        lines = [l for l in out.decode().splitlines() if l.startswith("{")]
        if p.returncode != 0 or not lines:
            raise RuntimeError("loadgen failed: %s %s" % (out.decode(), err.decode()))
        return json.loads(lines[-1])

    def scenario(self, system, topic, rate, pub_clients, subs, seconds):
        """subs: list of (host, broker, clients). Returns the figures of one run."""
        before = [self.stats(pid) for pid in system.pids]
        s = [self.sub(h, b, topic, n, seconds + 4, "s%d" % i) for i, (h, b, n) in enumerate(subs)]
        time.sleep(0.5)  # subscriptions reach the far side (peer SUBSCRIBE or bridge)
        p = self.pub("h3", H4, topic, pub_clients, rate, seconds, 1)
        sent = self.result(p, seconds + 30)["sent"]
        got = [self.result(x, seconds + 30) for x in s]
        after = [self.stats(pid) for pid in system.pids]
        expected = sent * sum(n for _, _, n in subs)
        delivered = sum(g["received"] for g in got)
        cpu = sum(a[0] - b[0] for a, b in zip(after, before))
        first = got[0]
        return {
            "sent": sent,
            "delivered": delivered,
            "loss_pct": 100.0 * (expected - delivered) / expected if expected else 0.0,
            "msgs_per_s": delivered / seconds,
            "p50_us": first["p50_us"], "p90_us": first["p90_us"], "p99_us": first["p99_us"],
            "max_us": first["max_us"],
            "cpu_s_per_10k": 10000.0 * cpu / delivered if delivered else float("nan"),
            "peak_rss_kib": max(a[2] for a in after),
        }

    def idle(self, system, clients):
        before = [self.stats(pid) for pid in system.pids]
        s = self.sub("h2", H1, "bench/idle", clients, 12, "idle")
        time.sleep(1)
        mid = [self.stats(pid) for pid in system.pids]
        time.sleep(5)
        end = [self.stats(pid) for pid in system.pids]
        self.result(s, 30)
        return {
            "rss_per_conn_b": 1024.0 * (mid[0][1] - before[0][1]) / clients,
            "idle_cpu_pct": 100.0 * sum(e[0] - m[0] for e, m in zip(end, mid)) / 5.0,
            "peak_rss_kib": max(e[2] for e in end),
        }

    def run_system(self, system):
        a = self.args
        runs = {}
        for rate in a.rates:
            runs["latency-%d" % rate] = self.scenario(system, "bench/lat/%d" % rate, rate, 1,
                                                      [("h2", H1, 1)], a.seconds)
        runs["flat-1"] = self.scenario(system, "bench/flat1", 0, 1, [("h2", H1, 1)], a.seconds)
        runs["flat-4"] = self.scenario(system, "bench/flat4", 0, 4, [("h2", H1, 1)], a.seconds)
        runs["fanout"] = self.scenario(system, "bench/fan", 10000, 1,
                                       [("h2", H1, 4), ("h3", H4, 4)], a.seconds)
        runs["idle"] = self.idle(system, a.idle)
        return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", default=os.path.join(REPO, "build", "mqtt_proxy"))
    ap.add_argument("--loadgen", default=os.path.join(REPO, "build", "bench", "loadgen"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rates", type=int, nargs="+", default=[20, 1000, 10000, 50000])
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--out", default=os.path.join(REPO, "build", "bench", "compare.csv"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("compare: needs root", file=sys.stderr)
        return 1
    import testbed  # pylint: disable=import-outside-toplevel

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    per_system = {}
    with tempfile.TemporaryDirectory() as work, \
            testbed.Testbed(os.path.join(os.path.dirname(args.out), "artifacts"),
                            proxy_binary=args.proxy) as tb:
        bench = Bench(tb, testbed, args)
        for rep in range(args.repeat):
            for kind in (ProxySystem, BridgeSystem):
                system = kind(tb, testbed, work)
                try:
                    runs = bench.run_system(system)
                finally:
                    system.stop()
                    time.sleep(1)
                print("%s run %d: %s" % (kind.name, rep, json.dumps(runs)), flush=True)
                per_system.setdefault(kind.name, []).append(runs)

    # Medians per scenario and figure.
    med = {}
    for name, reps in per_system.items():
        med[name] = {sc: {k: statistics.median(r[sc][k] for r in reps) for k in reps[0][sc]}
                     for sc in reps[0]}
    rows = []
    for sc in med["mqtt_proxy"]:
        for k in med["mqtt_proxy"][sc]:
            p, m = med["mqtt_proxy"][sc][k], med["mosquitto"][sc][k]
            rows.append((sc, k, p, m, p / m if m else float("nan")))
    print("\nmedians of %d runs; ratio = mqtt_proxy / mosquitto-bridge" % args.repeat)
    print("%-12s %-16s %14s %14s %8s" % ("scenario", "figure", "mqtt_proxy", "mosquitto", "ratio"))
    for sc, k, p, m, r in rows:
        print("%-12s %-16s %14.2f %14.2f %8.2f" % (sc, k, p, m, r))
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scenario", "figure", "mqtt_proxy", "mosquitto", "ratio"])
        w.writerows(rows)
    print("csv: %s" % args.out)
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
