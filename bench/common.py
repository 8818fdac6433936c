"""What the benchmarks share: the systems under test, medians of repeated runs, and the table of
ratios they end with.

Importing it puts mininet/ on sys.path (a script's own directory, bench/, is there already), so the
scripts import testbed, procs and stats after it. Runs under Debian's /usr/bin/python3 only.
"""

import csv
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


def host_name(i):
    return "h%d" % i


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
        except BaseException:
            for b in self.brokers:
                b.stop()
            raise
        self.pids = [b.pid for b in self.brokers]
        # The hosts' kernels do Mosquitto's TCP: their counters say what it retransmitted.
        self.retransmits_before = [stats.tcp_retransmits(pid) for pid in self.pids]

    def stop(self):
        """Stops the brokers; returns the TCP segments their hosts retransmitted meanwhile."""
        retransmitted = sum(stats.tcp_retransmits(pid) - before
                            for pid, before in zip(self.pids, self.retransmits_before))
        for b in self.brokers:
            b.stop()
        return retransmitted


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
