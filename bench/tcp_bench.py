#!/usr/bin/python3
"""TCP benchmark of mqtt_proxy against Mosquitto, both measured in the same run and testbed.

The server under test runs on h1 of the reference tree (depth 2, fanout 2); clients run on h2 and h3.
For each system, in turn:
  setup     connection set-up rate: --setup-count clients connect (TCP + CONNECT/CONNACK +
            SUBSCRIBE/SUBACK), --batch at a time, from h2; connections per second.
  memory    --idle-count idle subscribed clients from h2: the server's RSS growth per connection,
            and the kernel slab growth of the whole machine per connection (it includes the
            clients' sockets on h2 for both systems, and Mosquitto's server sockets, which its
            RSS does not show; the proxy has no kernel socket per connection). Slab is global:
            other activity on the machine adds noise.
  loss      5% random loss both ways on h2 and h3 (iptables statistic): --messages QoS 0
            messages published on h3 (paced at --rate) reach the subscriber on h2: delivered
            count, time, segments the loss rules dropped, and segments the server retransmitted
            (the proxy's counter; h1's kernel for Mosquitto). A client's own outgoing drops are
            retried by its kernel without counting as retransmissions.
Each figure is the median of --repeat runs. Prints a table with the ratio proxy / Mosquitto and
writes CSV to --out. Needs root, Mininet, Open vSwitch and mosquitto (scripts/setup.sh).
"""

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "mininet"))

import procs  # noqa: E402  pylint: disable=wrong-import-position
import stats  # noqa: E402  pylint: disable=wrong-import-position

H1 = "192.168.1.101"
MANY = os.path.join(REPO, "mininet", "clients", "many_clients.py")


def slab_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Slab:"):
                return int(line.split()[1])
    raise RuntimeError("no Slab in /proc/meminfo")


def tcp_retrans(tb, host):
    _, out, _ = tb.run(host, ["cat", "/proc/net/snmp"])
    rows = [line.split() for line in out.splitlines() if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("RetransSegs")])


class MqttProxyServer:
    name = "mqtt_proxy"

    def __init__(self, tb, testbed, workdir):
        self.proxy = tb.start_proxy("h1", extra=["--max-half-open", "4096"])
        self.pid = self.proxy.proc.pid

    def stop(self):
        self.proxy.stop()
        return self.proxy.final_counters().get("tcp_retransmits", 0)


class MosquittoServer:
    name = "mosquitto"

    def __init__(self, tb, testbed, workdir):
        self.tb = tb
        self.broker = procs.Mosquitto(
            tb.host("h1"), "listener 1883 0.0.0.0\nallow_anonymous true\nuser root\n"
            "max_connections -1\nlog_dest stderr\nlog_type error\nlog_type warning\n", workdir)
        self.pid = self.broker.pid
        self.before = tcp_retrans(tb, "h1")

    def stop(self):
        retrans = tcp_retrans(self.tb, "h1") - self.before
        self.broker.stop()
        return retrans


def many(tb, testbed, count, batch, idle=False, prefix="bench"):
    args = ["/usr/bin/python3", MANY, "--host", H1, "--count", str(count), "--batch", str(batch),
            "--user", testbed.USER, "--password", testbed.PASSWORD, "--prefix", prefix,
            "--timeout", "120"]
    if idle:
        args.append("--idle")
    return tb.popen("h2", args, stdin=subprocess.PIPE)


def setup_rate(tb, testbed, count, batch, run):
    p = many(tb, testbed, count, batch, idle=True, prefix="setup%d" % run)
    line = p.stdout.readline().decode()
    if not line.startswith("ready"):
        raise RuntimeError("clients failed: %s %s" % (line, p.stderr.read().decode()))
    seconds = float(line.split()[3])
    p.stdin.close()
    p.wait(60)
    time.sleep(1)  # let the closes finish before the next round
    return count / max(seconds, 0.001)


def idle_memory(tb, testbed, server, count, run):
    """(server RSS growth, whole-machine kernel slab growth) per idle connection, in bytes."""
    before, slab_before = stats.process_stats(server.pid)[1], slab_kib()
    p = many(tb, testbed, count, 200, idle=True, prefix="idle%d" % run)
    line = p.stdout.readline().decode()
    if not line.startswith("ready"):
        raise RuntimeError("clients failed: %s %s" % (line, p.stderr.read().decode()))
    time.sleep(1)
    after, slab_after = stats.process_stats(server.pid)[1], slab_kib()
    p.stdin.close()
    p.wait(60)
    time.sleep(2)
    return (after - before) * 1024.0 / count, (slab_after - slab_before) * 1024.0 / count


def lossy_delivery(tb, testbed, messages, rate, run):
    topic = "bench/loss/%d" % run
    auth = ["-u", testbed.USER, "-P", testbed.PASSWORD]
    loss = procs.LossRules(tb, ["h2", "h3"], 0.05)
    try:
        # -d: debug lines tell when the SUBACK arrived; over the lossy link that can take seconds
        # (a lost SYN alone costs one).
        sub = tb.popen("h2", ["stdbuf", "-oL", "mosquitto_sub", "-d", "-h", H1, "-t", topic,
                              "-C", str(messages), "-W", "120", "-k", "60"] + auth)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = sub.stdout.readline().decode()
            if not line or "SUBACK" in line:
                break
        if "SUBACK" not in line:
            raise RuntimeError("the subscriber got no SUBACK")
        # Paced like a sensor (--rate messages/s), so each message travels in a segment of its own
        # and the loss hits messages, not a few coalesced segments.
        pub = tb.popen("h3", ["mosquitto_pub", "-h", H1, "-t", topic, "-l"] + auth,
                       stdin=subprocess.PIPE)
        started = time.monotonic()
        for i in range(messages):
            pub.stdin.write(b"m%05d\n" % i)
            pub.stdin.flush()
            delay = started + (i + 1) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        pub.stdin.close()
        if pub.wait(120) != 0:
            raise RuntimeError("mosquitto_pub failed: %s" % pub.stderr.read().decode())
        got, _ = sub.communicate(timeout=130)
        seconds = time.monotonic() - started
    finally:
        dropped = loss.dropped()
        loss.remove()
    received = [w for w in got.decode().split() if w.startswith("m") and w[1:].isdigit()]
    in_order = received == ["m%05d" % i for i in range(messages)]
    return len(received), in_order, seconds, dropped


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", default=os.path.join(REPO, "build", "mqtt_proxy"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--setup-count", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--idle-count", type=int, default=5000)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=500, help="messages/s in the loss run")
    ap.add_argument("--out", default=os.path.join(REPO, "build", "bench", "tcp_bench.csv"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("tcp_bench: needs root", file=sys.stderr)
        return 1
    import testbed  # pylint: disable=import-outside-toplevel

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory() as work, \
            testbed.Testbed(os.path.join(os.path.dirname(args.out), "artifacts"),
                            proxy_binary=args.proxy) as tb:
        for kind in (MqttProxyServer, MosquittoServer):
            rows = {"setup": [], "memory": [], "slab": [], "delivered": [], "in_order": [], "seconds": [],
                    "server_retrans": [], "dropped": []}
            for run in range(args.repeat):
                server = kind(tb, testbed, work)
                try:
                    rows["setup"].append(setup_rate(tb, testbed, args.setup_count, args.batch, run))
                    rss, slab = idle_memory(tb, testbed, server, args.idle_count, run)
                    rows["memory"].append(rss)
                    rows["slab"].append(slab)
                    n, ordered, secs, dropped = lossy_delivery(tb, testbed, args.messages, args.rate, run)
                finally:
                    sr = server.stop()
                rows["delivered"].append(n)
                rows["in_order"].append(1 if ordered else 0)
                rows["seconds"].append(secs)
                rows["dropped"].append(dropped)
                rows["server_retrans"].append(sr)
                print("%s run %d: setup %.0f conn/s, %.0f B RSS + %.0f B kernel slab per idle conn, loss run %d/%d delivered "
                      "(in order: %s) in %.2f s, %d segments dropped by the loss rules, %d retransmitted by "
                      "the server"
                      % (kind.name, run, rows["setup"][-1], rows["memory"][-1], rows["slab"][-1], n,
                         args.messages,
                         ordered, secs, dropped, sr), flush=True)
            results[kind.name] = {k: statistics.median(v) for k, v in rows.items()}

    figures = [("setup", "connection set-up rate (conn/s)", "%.0f"),
               ("memory", "server RSS per idle connection (bytes)", "%.0f"),
               ("slab", "kernel slab per idle connection (bytes)", "%.0f"),
               ("delivered", "messages delivered through 5%% loss (of %d)" % args.messages, "%.0f"),
               ("seconds", "time to deliver them (s)", "%.2f"),
               ("dropped", "segments dropped by the 5% loss rules", "%.0f"),
               ("server_retrans", "segments retransmitted by the server", "%.0f")]
    p, m = results["mqtt_proxy"], results["mosquitto"]
    print("\nmedians of %d runs; ratio = mqtt_proxy / mosquitto" % args.repeat)
    print("%-48s %12s %12s %8s" % ("figure", "mqtt_proxy", "mosquitto", "ratio"))
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["figure", "mqtt_proxy", "mosquitto", "ratio"])
        for key, label, fmt in figures:
            ratio = p[key] / m[key] if m[key] else float("nan")
            print("%-48s %12s %12s %8.2f" % (label, fmt % p[key], fmt % m[key], ratio))
            w.writerow([key, p[key], m[key], ratio])
    print("csv: %s" % args.out)
    ok = p["delivered"] == args.messages and p["in_order"] == 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
