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
import os
import subprocess
import sys
import tempfile
import time

import common  # first: it puts mininet/ on sys.path
import procs
import stats
import testbed

REPO = common.REPO
H1 = testbed.host_ip(1)
MANY = os.path.join(REPO, "mininet", "clients", "many_clients.py")
# The server under test runs on h1, alone. Its retransmissions: the proxy's counter, h1's kernel's
# for Mosquitto. The last system is the reference of the ratio.
SYSTEMS = [
    ("mqtt_proxy", lambda tb, work: common.ProxySystem(tb, [1], ["--max-half-open", "4096"])),
    ("mosquitto", lambda tb, work: common.MosquittoSystem(
        tb, work, [1], "listener 1883 0.0.0.0\nallow_anonymous true\nuser root\n"
        "max_connections -1\nlog_dest stderr\nlog_type error\nlog_type warning\n")),
]


# Memory is measured a second after the last SUBACK.
IDLE_SETTLE_S = 1.0


def many(tb, count, batch, idle=False, prefix="bench"):
    args = ["/usr/bin/python3", MANY, "--host", H1, "--count", str(count), "--batch", str(batch),
            "--user", testbed.USER, "--password", testbed.PASSWORD, "--prefix", prefix,
            "--timeout", "120"]
    if idle:
        args.append("--idle")
    return tb.popen("h2", args, stdin=subprocess.PIPE)


def setup_rate(tb, count, batch, run):
    p = many(tb, count, batch, idle=True, prefix="setup%d" % run)
    line = p.stdout.readline().decode()
    if not line.startswith("ready"):
        raise RuntimeError("clients failed: %s %s" % (line, p.stderr.read().decode()))
    seconds = float(line.split()[3])
    p.stdin.close()
    p.wait(60)
    common.wait_tcp_closed(tb, (1, 2))  # the closes finish before the next round
    return count / max(seconds, 0.001)


def idle_memory(tb, server, count, run):
    """(server RSS growth, whole-machine kernel slab growth) per idle connection, in bytes."""
    before, slab_before = stats.process_stats(server.pids[0])[1], stats.slab_kib()
    p = many(tb, count, 200, idle=True, prefix="idle%d" % run)
    line = p.stdout.readline().decode()
    if not line.startswith("ready"):
        raise RuntimeError("clients failed: %s %s" % (line, p.stderr.read().decode()))
    time.sleep(IDLE_SETTLE_S)  # part of the measurement, not a barrier
    after, slab_after = stats.process_stats(server.pids[0])[1], stats.slab_kib()
    p.stdin.close()
    p.wait(60)
    common.wait_tcp_closed(tb, (1, 2))
    return (after - before) * 1024.0 / count, (slab_after - slab_before) * 1024.0 / count


def lossy_delivery(tb, messages, rate, run):
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

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory() as work, \
            testbed.Testbed(os.path.join(os.path.dirname(args.out), "artifacts"),
                            proxy_binary=args.proxy) as tb:
        for name, start in SYSTEMS:
            runs = []
            for run in range(args.repeat):
                server = start(tb, work)
                try:
                    setup = setup_rate(tb, args.setup_count, args.batch, run)
                    rss, slab = idle_memory(tb, server, args.idle_count, run)
                    n, ordered, secs, dropped = lossy_delivery(tb, args.messages, args.rate, run)
                finally:
                    sr = server.stop()
                runs.append({"setup": setup, "memory": rss, "slab": slab, "delivered": n,
                             "in_order": 1 if ordered else 0, "seconds": secs,
                             "server_retrans": sr, "dropped": dropped})
                print("%s run %d: setup %.0f conn/s, %.0f B RSS + %.0f B kernel slab per idle conn, loss run %d/%d delivered "
                      "(in order: %s) in %.2f s, %d segments dropped by the loss rules, %d retransmitted by "
                      "the server"
                      % (name, run, setup, rss, slab, n, args.messages, ordered, secs, dropped, sr),
                      flush=True)
            results[name] = common.medians(runs)

    figures = [("setup", "connection set-up rate (conn/s)", "%.0f"),
               ("memory", "server RSS per idle connection (bytes)", "%.0f"),
               ("slab", "kernel slab per idle connection (bytes)", "%.0f"),
               ("delivered", "messages delivered through 5%% loss (of %d)" % args.messages, "%.0f"),
               ("seconds", "time to deliver them (s)", "%.2f"),
               ("dropped", "segments dropped by the 5% loss rules", "%.0f"),
               ("server_retrans", "segments retransmitted by the server", "%.0f")]
    names = [name for name, _ in SYSTEMS]
    rows = common.ratio_rows(results, names, "mosquitto", [(key,) for key, _, _ in figures])
    print("\nmedians of %d runs; ratio = mqtt_proxy / mosquitto" % args.repeat)
    common.print_table([("figure", -48), (names[0], 12), (names[1], 12), ("ratio", 8)],
                       [[label, fmt % proxy, fmt % mosquitto, r]
                        for (_, label, fmt), (_, proxy, mosquitto, r) in zip(figures, rows)])
    common.write_csv(args.out, ["figure"] + names + ["ratio"], rows)
    print("csv: %s" % args.out)
    p = results["mqtt_proxy"]
    ok = p["delivered"] == args.messages and p["in_order"] == 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
