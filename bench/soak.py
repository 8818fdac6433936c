#!/usr/bin/python3
"""Soak: mqtt_proxy on h1 and h4 of the reference testbed under a steady stream and client churn for
--minutes (30); fails unless memory stays flat, nothing is lost and the counters add up.

Not part of `bench/run.sh` (all) nor of CI: `bash bench/run.sh soak` runs it.

System under test: mqtt_proxy on h1 and h4, each the other's peer, started as bench/compare.py
starts them (common.ProxySystem: the README's launch line, and --stats-interval, which only logs
the counters every N s; --proxy-extra adds options).
Main stream: one publisher (build/bench/mosq_pub) on h3 via h4 at --rate msgs/s for --minutes; one
subscriber (build/bench/loadgen) on h2 via h1.
Churn, meanwhile: --churn-rate cycles a second, at most --churn-max churn clients connected at once.
A cycle is a subscriber and a publisher of a topic of their own on opposite sides, the direction
alternating (subscriber on h2 via h1 and publisher on h3 via h4, then subscriber on h3 via h4 and
publisher on h2 via h1): the subscriber connects and subscribes; once its SUBSCRIBE reached the
publisher's proxy (the proxy logs it), the publisher connects and publishes 1 to 20 messages; once
the subscriber has them, each of the two stays 0 to --churn-hold s and leaves, by DISCONNECT, by a
FIN without DISCONNECT or by an RST (mininet/clients/churn_clients.py, one process per client host).
Checks, each printed; any that fails makes the exit status 1:
- RSS of each proxy flat: the median over the last 10% of the run within --rss-tolerance % of the
  median over minutes 2 to 3 (of 30; the same fractions of a shorter or longer run);
- nothing lost: the main subscriber got every message the publisher sent, once, in order; every
  churn subscriber got its publisher's messages;
- the final counters add up (check_counters explains the identities).
Prints a summary in Markdown (for docs/benchmarks.md); writes the RSS and CPU samples as CSV to
--out and the whole result as JSON beside it; the proxies' logs stay in soak-artifacts/ beside it.
"""

import argparse
import json
import os
import random
import select
import statistics
import subprocess
import sys
import time

import common  # first: it puts mininet/ on sys.path
import stats
import testbed

REPO = common.REPO
SERVERS = (1, 4)  # the proxies run on h1 and h4
H1, H4 = testbed.host_ip(1), testbed.host_ip(4)
NAMES = {H1: "h1", H4: "h4"}
PEER = {H1: H4, H4: H1}
MAIN_TOPIC = "bench/soak"
CHURN_CLIENTS = os.path.join(REPO, "mininet", "clients", "churn_clients.py")
LEAVE = ("disconnect", "close", "reset")  # DISCONNECT and FIN; FIN alone; RST alone
COMMAND_TIMEOUT = 10.0  # seconds any one churn step may take
SUB_MARGIN = 20  # the main subscriber listens this much longer than the publisher publishes
# The RSS windows, as fractions of the run: minutes 2-3 of 30 (after warm-up), the last 10%.
WARM_WINDOW = (2.0 / 30, 3.0 / 30)
END_WINDOW = (0.9, 1.0)


class ChurnClients:
    """mininet/clients/churn_clients.py in one host, its clients connecting to `broker`."""

    def __init__(self, tb, host, broker, log_path):
        self.host, self.broker = host, broker
        self._err = open(log_path, "wb")
        self.proc = tb.popen(host, ["/usr/bin/python3", CHURN_CLIENTS, "--host", broker,
                                    "--user", testbed.USER, "--password", testbed.PASSWORD,
                                    "--timeout", str(COMMAND_TIMEOUT)],
                             stdin=subprocess.PIPE, stderr=self._err)
        self._buf = b""

    def call(self, *words):
        """Sends one command; returns its answer (a dict; "error" in it if it failed)."""
        self.proc.stdin.write((" ".join(str(w) for w in words) + "\n").encode())
        self.proc.stdin.flush()
        return json.loads(self._line(COMMAND_TIMEOUT + 5))

    def _line(self, timeout):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise RuntimeError("churn clients on %s: no answer within %.0f s"
                                   % (self.host, timeout))
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError("churn clients on %s ended (stderr in %s)"
                                   % (self.host, self._err.name))
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def quit(self):
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write(b"quit\n")
                self.proc.stdin.flush()
                return json.loads(self._line(COMMAND_TIMEOUT + 5))
            return {}
        finally:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self._err.close()


class Churn:
    """The churn cycles, and what their clients did to each proxy (keyed by its address)."""

    def __init__(self, system, clients, args, rng):
        self.system, self.args, self.rng = system, args, rng
        # (subscribers' side, publishers' side), alternately
        self.directions = [(clients["h2"], clients["h3"]), (clients["h3"], clients["h2"])]
        self.cycles = self.skipped = 0
        self.connections = {H1: 0, H4: 0}  # connections the churn clients made to each proxy
        self.sent = {H1: 0, H4: 0}  # churn messages published to each proxy
        self.received = {H1: 0, H4: 0}  # churn messages received through each proxy
        self.left = dict.fromkeys(LEAVE, 0)
        self.errors = []
        self.lingering = []  # (when it leaves, its ChurnClients, client id, how)

    def _call(self, clients, *words):
        reply = clients.call(*words)
        if "error" in reply:
            self.errors.append("%s: %s" % (clients.host, reply["error"]))
            return None
        return reply

    def cycle(self, now):
        if len(self.lingering) + 2 > self.args.churn_max:
            self.skipped += 1
            return
        subs, pubs = self.directions[self.cycles % 2]
        k = self.cycles
        self.cycles += 1
        topic, sid, pid = "bench/churn/%d" % k, "churn-s%d" % k, "churn-p%d" % k
        n = self.rng.randint(1, 20)
        pub_proxy = self.system.servers[pubs.broker]
        mark = pub_proxy.log_size()
        if self._call(subs, "sub", sid, topic) is None:
            return
        self.connections[subs.broker] += 1
        self._linger(now, subs, sid)
        if not pub_proxy.wait_peer_interest(topic, timeout=COMMAND_TIMEOUT, since=mark):
            self.errors.append("the proxy on %s never logged the peer SUBSCRIBE %s"
                               % (NAMES[pubs.broker], topic))
            return
        if self._call(pubs, "pub", pid, topic, n) is None:
            return
        self.connections[pubs.broker] += 1
        self.sent[pubs.broker] += n
        self._linger(now, pubs, pid)
        got = self._call(subs, "wait", sid, n, COMMAND_TIMEOUT)
        if got is not None:
            self.received[subs.broker] += got["received"]

    def _linger(self, now, clients, cid):
        self.lingering.append((now + self.rng.uniform(0, self.args.churn_hold), clients, cid,
                               self.rng.choice(LEAVE)))

    def leave_due(self, now):
        due = [x for x in self.lingering if x[0] <= now]
        self.lingering = [x for x in self.lingering if x[0] > now]
        for _, clients, cid, how in due:
            if self._call(clients, "leave", cid, how) is not None:
                self.left[how] += 1

    def leave_all(self):
        self.leave_due(float("inf"))

    def next_due(self):
        return min((x[0] for x in self.lingering), default=float("inf"))


def sample(pids, t, churn):
    row = {"t_s": t, "churn_connections": sum(churn.connections.values())}
    for addr, pid in pids.items():
        cpu, rss, hwm = stats.process_stats(pid)
        row.update({NAMES[addr] + "_rss_kib": rss, NAMES[addr] + "_cpu_s": cpu,
                    NAMES[addr] + "_peak_rss_kib": hwm})
    return row


def soak(tb, system, args, rng, artifacts):
    seconds = args.minutes * 60.0
    interval = args.sample_interval or min(5.0, max(0.5, seconds / 360))
    pids = {addr: p.proc.pid for addr, p in system.servers.items()}
    sub = common.start_subscriber(tb, args.loadgen, "h2", H1, MAIN_TOPIC, 1, seconds + SUB_MARGIN,
                                  "soak")
    system.wait_subscribed(MAIN_TOPIC, [H1], H4)
    clients = {}
    try:
        for host, broker in (("h2", H1), ("h3", H4)):
            clients[host] = ChurnClients(tb, host, broker,
                                         os.path.join(artifacts, "churn-%s.log" % host))
        churn = Churn(system, clients, args, rng)
        samples = []
        pub = common.start_publisher(tb, args.publisher, "h3", H4, MAIN_TOPIC, 1, args.rate,
                                     seconds, 1)
        t0 = time.monotonic()
        end = t0 + seconds
        period = 1.0 / args.churn_rate if args.churn_rate > 0 else float("inf")
        next_sample, next_cycle = t0, t0 + min(period, 1.0) if args.churn_rate > 0 else end
        while True:
            now = time.monotonic()
            if now >= end:
                break
            for p in system.servers.values():
                if p.proc.poll() is not None:
                    raise RuntimeError("the proxy on %s exited (%s) at %.0f s"
                                       % (p.host.name, p.proc.returncode, now - t0))
            for what, p in (("subscriber", sub), ("publisher", pub)):
                if p.poll() is not None and now < end - 2:
                    raise RuntimeError("the main %s ended at %.0f s: %s"
                                       % (what, now - t0, p.stderr.read().decode()))
            if now >= next_sample:
                samples.append(sample(pids, now - t0, churn))
                next_sample += interval
            churn.leave_due(now)
            if now >= next_cycle and args.churn_rate > 0:
                churn.cycle(now)
                next_cycle = max(next_cycle + period, time.monotonic())  # late: no burst after
            wake = min(next_sample, next_cycle, churn.next_due(), end)
            time.sleep(min(0.1, max(0.0, wake - time.monotonic())))
        samples.append(sample(pids, time.monotonic() - t0, churn))
        churn.leave_all()
        published = common.client_result(pub, 60)
        received = common.client_result(sub, SUB_MARGIN + 60)
    finally:
        for c in clients.values():
            c.quit()
    # Every client is gone: the sessions of the last to leave are over once the hosts' TCP
    # connections are.
    try:
        common.wait_tcp_closed(tb, (2, 3))
        closed = ""
    except RuntimeError as e:
        closed = str(e)
    return samples, published, received, churn, closed


def window_median(samples, key, window, seconds):
    lo, hi = window[0] * seconds, window[1] * seconds
    values = [s[key] for s in samples if lo <= s["t_s"] <= hi]
    return statistics.median(values) if values else float("nan")


def check_counters(counters, published, received, connections):
    """The identities the final counters must satisfy; a list of (proxy, identity, left side,
    right side).

    Where the counters come from (src/broker/broker.cpp, src/peering/peering.cpp):
    - Broker::handle_publish counts every PUBLISH from a client in mqtt_publish_received, then
      hands it to deliver_local (an offer() per matching local subscriber) and to
      Peering::forward_publish. forward_publish gives each peer with a matching filter one copy:
      peer_publish_too_large if it does not fit a datagram, else push_publish: peer_publish_out
      when it is sent at once (send_data; enqueue for a plain peer), peer_publish_dropped when the
      peer is stuck or the queue for it is full, else it waits (peer_publish_waited) until pump()
      sends it (peer_publish_out) or drop_pending() drops it (peer_publish_dropped). A PUBLISH on
      a topic no peer subscribed to is counted nowhere else, so the run publishes none; retained
      messages sent to a subscribing peer also count in peer_publish_out (mqtt_retained_sent).
    - Peering::on_packet counts a PUBLISH from a peer in peer_publish_in unless its datagram came
      late or twice; account() adds the PUBLISHes of datagrams that never came (sequence gaps,
      the extension's) to peer_publish_lost, which is where a late one was counted. Then
      Broker::on_peer_publish -> deliver_local -> offer() per matching subscriber:
      mqtt_publish_delivered (queued to it), mqtt_publish_dropped_slow (stuck, or over
      --max-queued-bytes) or mqtt_publish_dropped_too_large. Wills and retained messages sent to
      new subscribers go through offer() too (mqtt_wills_published, mqtt_retained_sent).
    Every topic of the run is subscribed on one side only and published on the other, so a
    client's PUBLISH has exactly one interested peer and no local subscriber, and a peer's
    PUBLISH exactly one local subscriber; no client has a will or retains. Then, for each proxy P
    with its peer Q, once everything drained (the clients are gone before SIGTERM):
      (1) mqtt_publish_received(P) = what the clients published to P
      (2) mqtt_publish_received(P) = peer_publish_out(P) + peer_publish_dropped(P)
                                     + peer_publish_too_large(P)
      (3) peer_publish_out(P) = peer_publish_in(Q) + peer_publish_lost(Q)
      (4) peer_publish_in(P) = mqtt_publish_delivered(P) + mqtt_publish_dropped_slow(P)
                               + mqtt_publish_dropped_too_large(P)
      (5) mqtt_publish_delivered(P) = what the subscribers through P received
      (6) mqtt_connects(P) = the connections the clients made to P
                           = mqtt_disconnects(P) + mqtt_connections_lost(P)
      (7) mqtt_wills_published(P) + mqtt_retained_sent(P) = 0 (what (2) and (4) assume)
    (2)-(4) say every message is either passed on or counted as dropped or lost; the checks on
    loss then want the drops to be 0. (6): every session ended, by DISCONNECT or without it, and
    none by keepalive, protocol error or takeover."""
    rows = []
    for p in (H1, H4):
        c, q = counters[p], counters[PEER[p]]

        def sum_of(*names, c=c):
            return sum(c.get(n, 0) for n in names)

        name = NAMES[p]
        rows += [
            (name, "(1) mqtt_publish_received = published by clients",
             sum_of("mqtt_publish_received"), published[p]),
            (name, "(2) mqtt_publish_received = peer_publish_out + _dropped + _too_large",
             sum_of("mqtt_publish_received"),
             sum_of("peer_publish_out", "peer_publish_dropped", "peer_publish_too_large")),
            (name, "(3) peer_publish_out = the peer's peer_publish_in + peer_publish_lost",
             sum_of("peer_publish_out"),
             q.get("peer_publish_in", 0) + q.get("peer_publish_lost", 0)),
            (name, "(4) peer_publish_in = mqtt_publish_delivered + _dropped_slow + _too_large",
             sum_of("peer_publish_in"),
             sum_of("mqtt_publish_delivered", "mqtt_publish_dropped_slow",
                    "mqtt_publish_dropped_too_large")),
            (name, "(5) mqtt_publish_delivered = received by subscribers",
             sum_of("mqtt_publish_delivered"), received[p]),
            (name, "(6a) mqtt_connects = connections made", sum_of("mqtt_connects"),
             connections[p]),
            (name, "(6b) mqtt_connects = mqtt_disconnects + mqtt_connections_lost",
             sum_of("mqtt_connects"), sum_of("mqtt_disconnects", "mqtt_connections_lost")),
            (name, "(7) mqtt_wills_published + mqtt_retained_sent = 0",
             sum_of("mqtt_wills_published", "mqtt_retained_sent"), 0),
        ]
    return rows


DROPS = ("peer_publish_dropped", "peer_publish_too_large", "peer_publish_lost",
         "mqtt_publish_dropped_slow", "mqtt_publish_dropped_too_large")


def markdown(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--rate", type=int, default=10000, help="main stream, msgs/s")
    ap.add_argument("--proxy", default=os.path.join(REPO, "build", "mqtt_proxy"))
    ap.add_argument("--loadgen", default=os.path.join(REPO, "build", "bench", "loadgen"),
                    help="the main subscriber")
    ap.add_argument("--publisher", default=os.path.join(REPO, "build", "bench", "mosq_pub"),
                    help="the main publisher: a program with mosq_pub's options and output")
    ap.add_argument("--proxy-extra", nargs="*", default=[], metavar="OPTION",
                    help="options for the proxies beside -F (none: the defaults are soaked)")
    ap.add_argument("--stats-interval", type=int, default=30,
                    help="the proxies log their counters every N s (0: at exit only)")
    ap.add_argument("--churn-rate", type=float, default=2.0,
                    help="churn cycles a second (two connections each; 0: no churn)")
    ap.add_argument("--churn-hold", type=float, default=3.0,
                    help="a churn client stays up to N s after its messages")
    ap.add_argument("--churn-max", type=int, default=40,
                    help="churn clients connected at once, at most")
    ap.add_argument("--rss-tolerance", type=float, default=5.0, help="percent")
    ap.add_argument("--sample-interval", type=float, default=0,
                    help="seconds between RSS samples (0: the run / 360, within 0.5-5 s)")
    ap.add_argument("--seed", type=int, default=1, help="of the churn's choices")
    ap.add_argument("--out", default=os.path.join(REPO, "build", "bench", "soak.csv"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("soak: needs root", file=sys.stderr)
        return 1
    seconds = args.minutes * 60.0
    if seconds < 30:
        ap.error("--minutes: at least 0.5")

    out_dir = os.path.dirname(os.path.abspath(args.out))
    artifacts = os.path.join(out_dir, "soak-artifacts")
    os.makedirs(artifacts, exist_ok=True)
    extra = list(args.proxy_extra)
    if args.stats_interval:
        extra += ["--stats-interval", str(args.stats_interval)]
    rng = random.Random(args.seed)
    with testbed.Testbed(artifacts, proxy_binary=args.proxy) as tb:
        system = common.ProxySystem(tb, SERVERS, extra)
        servers = dict(system.servers)
        try:
            samples, published, received, churn, not_closed = soak(tb, system, args, rng,
                                                                   artifacts)
        finally:
            system.stop()
    counters = {addr: p.final_counters() for addr, p in servers.items()}
    for addr, c in counters.items():
        if not c:
            raise RuntimeError("no final counters in %s" % servers[addr].log_path)

    # What the clients did to each proxy, for the counter identities.
    to_proxy = {H1: churn.sent[H1], H4: churn.sent[H4] + published["sent"]}
    from_proxy = {H1: churn.received[H1] + received["received"], H4: churn.received[H4]}
    connections = {H1: churn.connections[H1] + 1, H4: churn.connections[H4] + 1}

    checks = []  # (what, ok, detail)
    figures = {}
    for addr in (H1, H4):
        n = NAMES[addr]
        warm = window_median(samples, n + "_rss_kib", WARM_WINDOW, seconds)
        last = window_median(samples, n + "_rss_kib", END_WINDOW, seconds)
        change = 100.0 * (last - warm) / warm
        cpu = samples[-1][n + "_cpu_s"] - samples[0][n + "_cpu_s"]
        figures[n] = {"rss_warm_kib": warm, "rss_end_kib": last, "rss_change_pct": change,
                      "peak_rss_kib": samples[-1][n + "_peak_rss_kib"], "cpu_s": cpu,
                      "cpu_pct": 100.0 * cpu / (samples[-1]["t_s"] - samples[0]["t_s"]),
                      "drops": {d: counters[addr].get(d, 0) for d in DROPS},
                      "peer_filters_at_exit": [f for _, _, f in
                                               servers[addr].peer_status("final counters")],
                      "peer_filters_max": max([f for _, _, f in servers[addr].peer_status("stats")],
                                              default=0)}
        checks.append(("%s RSS flat within %.0f%%" % (n, args.rss_tolerance),
                       abs(change) <= args.rss_tolerance,
                       "%.0f KiB at %.0f-%.0f s, %.0f KiB at %.0f-%.0f s: %+.2f%%"
                       % (warm, WARM_WINDOW[0] * seconds, WARM_WINDOW[1] * seconds, last,
                          END_WINDOW[0] * seconds, END_WINDOW[1] * seconds, change)))
    sent, got = published["sent"], received["received"]
    checks.append(("main stream: delivered == sent, once, in order",
                   got == sent and published.get("written", sent) == sent
                   and received["duplicates"] == 0 and received["gaps"] == 0,
                   "sent %d (written %s), delivered %d, duplicates %d, gaps %d"
                   % (sent, published.get("written", "-"), got, received["duplicates"],
                      received["gaps"])))
    churn_sent, churn_got = sum(churn.sent.values()), sum(churn.received.values())
    checks.append(("churn: every message delivered, every step done",
                   churn_sent == churn_got and not churn.errors,
                   "%d cycles, %d messages sent, %d received, %d errors%s"
                   % (churn.cycles, churn_sent, churn_got, len(churn.errors),
                      "".join("\n      " + e for e in churn.errors[:10]))))
    checks.append(("every client connection closed before the proxies stop", not not_closed,
                   not_closed or "none open on h2 and h3"))
    identities = check_counters(counters, to_proxy, from_proxy, connections)
    for name, what, left, right in identities:
        checks.append(("%s %s" % (name, what), left == right, "%d vs %d" % (left, right)))
    drops = {NAMES[a]: sum(counters[a].get(d, 0) for d in DROPS) for a in (H1, H4)}
    checks.append(("no messages dropped or lost (counted)", not any(drops.values()),
                   ", ".join("%s %d" % kv for kv in sorted(drops.items()))))
    left_over = {NAMES[a]: figures[NAMES[a]]["peer_filters_at_exit"] for a in (H1, H4)}
    checks.append(("no peer interest left once the clients are gone",
                   all(f == [0] for f in left_over.values()),
                   ", ".join("%s %s" % kv for kv in sorted(left_over.items()))))

    # The summary.
    churn_conns = sum(churn.connections.values())
    run_rows = [
        ("duration", "{:.1f} min; main stream {:,} msgs/s, h3 -> h4 -> h1 -> h2".format(
            args.minutes, args.rate)),
        ("main stream sent / delivered / lost", "{:,} / {:,} / {:,} ({:.4f}%)".format(
            sent, got, sent - got, 100.0 * (sent - got) / sent if sent else 0.0)),
        ("main stream one-way latency p50 / p99 / max (ms)", "%.2f / %.2f / %.1f"
         % (received["p50_us"] / 1e3, received["p99_us"] / 1e3, received["max_us"] / 1e3)),
        ("churn connections made (left by DISCONNECT / FIN / RST)", "{:,} ({:,} / {:,} / {:,})"
         .format(churn_conns, churn.left["disconnect"], churn.left["close"],
                 churn.left["reset"])),
        ("churn messages sent / delivered", "{:,} / {:,} in {:,} cycles ({:,} skipped)".format(
            churn_sent, churn_got, churn.cycles, churn.skipped)),
    ]
    f1, f4 = figures["h1"], figures["h4"]

    def both(fmt, key):
        return [fmt.format(f1[key]), fmt.format(f4[key])]

    proxy_rows = [
        ["RSS at %.0f-%.0f s, median (KiB)" % (WARM_WINDOW[0] * seconds, WARM_WINDOW[1] * seconds)]
        + both("{:,.0f}", "rss_warm_kib"),
        ["RSS over the last 10%, median (KiB)"] + both("{:,.0f}", "rss_end_kib"),
        ["RSS change"] + both("{:+.2f}%", "rss_change_pct"),
        ["peak RSS (KiB)"] + both("{:,}", "peak_rss_kib"),
        ["CPU s (% of a core)"] + ["%.1f (%.1f%%)" % (f["cpu_s"], f["cpu_pct"]) for f in (f1, f4)],
        ["PUBLISH from clients / from the peer"]
        + ["{:,} / {:,}".format(counters[a].get("mqtt_publish_received", 0),
                                counters[a].get("peer_publish_in", 0)) for a in (H1, H4)],
        ["PUBLISH to subscribers / to the peer"]
        + ["{:,} / {:,}".format(counters[a].get("mqtt_publish_delivered", 0),
                                counters[a].get("peer_publish_out", 0)) for a in (H1, H4)],
        ["drops and losses counted"] + ["{:,}".format(drops["h1"]), "{:,}".format(drops["h4"])],
        ["peer filters held: most during the run / at exit"]
        + ["%d / %s" % (f["peer_filters_max"], ",".join(map(str, f["peer_filters_at_exit"])))
           for f in (f1, f4)],
    ]
    print()
    print(markdown(["figure", "value"], run_rows))
    print()
    print(markdown(["figure", "mqtt_proxy h1 (subscribers)", "mqtt_proxy h4 (publishers)"],
                   proxy_rows))
    print()
    for what, ok, detail in checks:
        print("%s  %s: %s" % ("ok  " if ok else "FAIL", what, detail))

    keys = list(samples[0])
    common.write_csv(args.out, keys, [[s[k] for k in keys] for s in samples])
    summary = os.path.splitext(args.out)[0] + ".json"
    with open(summary, "w") as f:
        json.dump({"args": vars(args), "figures": figures, "published": published,
                   "received": received, "churn": {"cycles": churn.cycles,
                                                   "skipped": churn.skipped,
                                                   "connections": churn_conns,
                                                   "left": churn.left, "sent": churn_sent,
                                                   "received": churn_got,
                                                   "errors": churn.errors},
                   "counters": {NAMES[a]: c for a, c in counters.items()},
                   "checks": [{"check": w, "ok": ok, "detail": d} for w, ok, d in checks]},
                  f, indent=1)
    print("csv: %s\njson: %s\nlogs: %s" % (args.out, summary, artifacts))
    failed = [w for w, ok, _ in checks if not ok]
    if failed:
        print("soak: %d check(s) failed" % len(failed))
        return 1
    print("soak: all %d checks passed" % len(checks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
