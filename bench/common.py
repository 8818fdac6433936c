"""What the benchmarks share: the systems under test, medians of repeated runs, and the table of
ratios they end with.

Importing it puts mininet/ on sys.path (a script's own directory, bench/, is there already), so the
scripts import testbed, procs and stats after it. Runs under Debian's /usr/bin/python3 only.
"""

import csv
import json
import os
import statistics
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "mininet"))

import procs  # noqa: E402  pylint: disable=wrong-import-position
import stats  # noqa: E402  pylint: disable=wrong-import-position

try:
    import testbed  # noqa: E402  pylint: disable=wrong-import-position
except ImportError as e:
    sys.exit("bench: %s (Mininet imports only in Debian's /usr/bin/python3)" % e)


# The credentials of the testbed's proxies (testbed.start_proxy), for the load generators.
AUTH = ["--user", testbed.USER, "--password", testbed.PASSWORD]


def host_name(i):
    return "h%d" % i


def start_subscriber(tb, loadgen, host, broker, topic, clients, seconds, tag):
    """bench/loadgen subscribers on `host`: `clients` connections to `broker` subscribed to
    `topic`, for `seconds` after all are subscribed. Returns the process once they are
    (client_result() reads what they received)."""
    return _ready(tb.popen(host, [loadgen, "sub", "--host", broker, "--topic", topic,
                                  "--clients", str(clients), "--duration", str(seconds),
                                  "--id", tag] + AUTH), "subscriber")


def start_publisher(tb, publisher, host, broker, topic, clients, rate, seconds, number):
    """A publisher (bench/mosq_pub or a program with its options and output) on `host`: `clients`
    connections to `broker` publishing on `topic` at `rate` msgs/s in all (0: flat out) for
    `seconds`, numbered `number` in the payloads. Returns the process once connected."""
    return _ready(tb.popen(host, [publisher, "--host", broker, "--topic", topic,
                                  "--clients", str(clients), "--rate", str(rate),
                                  "--duration", str(seconds), "--publisher", str(number),
                                  "--id", "p%d" % number] + AUTH), "publisher")


def _ready(p, what):
    line = p.stdout.readline().decode()
    if line.strip() != "ready":
        raise RuntimeError("%s: %s %s" % (what, line, p.stderr.read().decode()))
    return p


def client_result(p, timeout):
    """The JSON line a load generator (subscriber or publisher) prints at its end, as a dict."""
    out, err = p.communicate(timeout=timeout)
    lines = [l for l in out.decode().splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        raise RuntimeError("loadgen failed: %s %s" % (out.decode(), err.decode()))
    return json.loads(lines[-1])


class ProxySystem:
    """mqtt_proxy on the testbed hosts numbered `hosts`, each naming the others as its peers."""

    def __init__(self, tb, hosts, extra=()):
        self.tb = tb
        self.servers = {}  # address -> procs.Proxy
        try:
            for i in hosts:
                peers = [testbed.host_ip(j) for j in hosts if j != i]
                self.servers[testbed.host_ip(i)] = tb.start_proxy(host_name(i), peers=peers,
                                                                  extra=list(extra))
        except BaseException:
            self.stop()
            raise
        self.pids = [p.proc.pid for p in self.servers.values()]

    def wait_subscribed(self, topic, sub_brokers, pub_broker, timeout=10):
        """Returns once the proxy at `pub_broker` (the publishers') has the interest in `topic` of
        each other proxy in `sub_brokers` (the subscribers'), which their subscribers' SUBSCRIBE
        made them send as a peer SUBSCRIBE. It reads the proxies' log: info level at least."""
        proxy = self.servers[pub_broker]
        for broker in sorted(set(sub_brokers) - {pub_broker}):
            if not proxy.wait_peer_interest(topic, peer=broker, timeout=timeout):
                raise RuntimeError("the proxy on %s never saw %s's SUBSCRIBE %s"
                                   % (proxy.host.name, broker, topic))

    def stop(self):
        """Stops the proxies; returns the TCP segments they retransmitted."""
        retransmitted = 0
        for p in self.servers.values():
            p.stop()
            self.tb.proxies.remove(p)
            retransmitted += p.final_counters().get("tcp_retransmits", 0)
        return retransmitted


class MosquittoSystem:
    """Mosquitto on the testbed hosts numbered `hosts`, with the configuration text `config` (a
    listener on port 1883 that allows anonymous clients). With `bridge=(i, j)` the broker on hi is
    bridged to the one on hj over TCP: topics bench/# both ways, QoS 0."""

    def __init__(self, tb, workdir, hosts, config, bridge=None):
        self.brokers = []
        try:
            for i in hosts:
                conf = config
                if bridge and i == bridge[0]:
                    conf += ("connection %s-to-%s\naddress %s:1883\ntopic bench/# both 0\n"
                             "cleansession true\nbridge_protocol_version mqttv311\n"
                             % (host_name(i), host_name(bridge[1]), testbed.host_ip(bridge[1])))
                self.brokers.append(procs.Mosquitto(tb.host(host_name(i)), conf, workdir))
            if bridge:
                wait_bridged(tb, *bridge)
        except BaseException:
            for b in self.brokers:
                b.stop()
            raise
        self.pids = [b.pid for b in self.brokers]
        # The hosts' kernels do Mosquitto's TCP: their counters say what it retransmitted.
        self.retransmits_before = [stats.tcp_retransmits(pid) for pid in self.pids]

    def wait_subscribed(self, topic, sub_brokers, pub_broker, timeout=10):
        """Nothing to wait for: a subscription lives in the broker that acknowledged it, and the
        bridge, up since the start, carries every bench/# message both ways, subscribed or not."""

    def stop(self):
        """Stops the brokers; returns the TCP segments their hosts retransmitted meanwhile."""
        retransmitted = sum(stats.tcp_retransmits(pid) - before
                            for pid, before in zip(self.pids, self.retransmits_before))
        for b in self.brokers:
            b.stop()
        return retransmitted


def wait_bridged(tb, i, j, timeout=20):
    """Waits until the bridge between the brokers on hi and hj carries messages both ways: a probe
    published on one broker, again every 0.1 s, reaches a subscriber of the other."""
    for src, dst in ((i, j), (j, i)):
        topic = "bench/probe/%s-to-%s" % (host_name(src), host_name(dst))
        sub = tb.popen(host_name(dst), ["mosquitto_sub", "-h", "127.0.0.1", "-t", topic, "-C", "1",
                                        "-W", str(timeout)])

        def arrived(src=src, topic=topic, sub=sub):
            tb.run(host_name(src), ["mosquitto_pub", "-h", "127.0.0.1", "-t", topic, "-m", "probe"],
                   timeout=5)
            return sub.poll() is not None

        procs.wait_for(arrived, timeout, interval=0.1)
        if sub.poll() is None:
            sub.kill()
        out, err = sub.communicate()
        if sub.returncode != 0 or out.decode().strip() != "probe":
            raise RuntimeError("the bridge does not carry %s within %d s: %s %s"
                               % (topic, timeout, out.decode(), err.decode()))


def wait_tcp_closed(tb, hosts, port=1883, timeout=30):
    """Waits until no TCP connection to or from `port` is open or closing on the testbed hosts
    numbered `hosts` (TIME-WAIT aside: such a connection is over): the clients of one round are
    gone before the next round starts. Counts every kernel socket of the hosts, the clients' and
    Mosquitto's (the proxy has none)."""
    def closed():
        for i in hosts:
            rc, out, err = tb.run(host_name(i), ["ss", "-Htan", "state", "connected", "exclude",
                                                 "time-wait", "( sport = :%d or dport = :%d )"
                                                 % (port, port)])
            if rc != 0:
                raise RuntimeError("ss on %s: %s" % (host_name(i), err))
            if out.strip():
                return False
        return True

    if not procs.wait_for(closed, timeout, interval=0.1):
        raise RuntimeError("TCP connections on port %d still open after %d s" % (port, timeout))


def medians(runs):
    """The median over `runs` of every figure; a run is a dict of figures, or of such dicts."""
    first = runs[0]
    return {k: medians([r[k] for r in runs]) if isinstance(first[k], dict)
            else statistics.median(r[k] for r in runs) for k in first}


def ratio(value, reference):
    return value / reference if reference else float("nan")


def ratio_rows(med, names, reference, keys):
    """One row per key: the key's parts, the median of each system in `names`, then the ratio of
    each of the others to `reference`. `med` maps a system's name to its medians; a key is the
    path to one figure in them (a tuple)."""
    def at(d, key):
        for k in key:
            d = d[k]
        return d

    rows = []
    for key in keys:
        values = [at(med[n], key) for n in names]
        ref = at(med[reference], key)
        rows.append(list(key) + values +
                    [ratio(v, ref) for n, v in zip(names, values) if n != reference])
    return rows


def print_table(columns, rows):
    """Prints `rows` under `columns`, (heading, width) pairs; a negative width aligns left.
    Numbers come with two decimals, strings as they are."""
    fmt = " ".join("%%%ds" % w for _, w in columns)
    print(fmt % tuple(h for h, _ in columns))
    for row in rows:
        print(fmt % tuple(c if isinstance(c, str) else "%.2f" % c for c in row))


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
