"""Processes the testbed starts in its hosts, each stopped by PID: mqtt_proxy, Mosquitto, tcpdump;
the iptables rules that drop a share of the MQTT segments; and a reader of a client's output.

Nothing here imports Mininet: a host is a Mininet host (its `popen` and `name`), a testbed a
testbed.Testbed.
"""

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest

import stats


def ofctl(*args, check=True):
    """`ovs-ofctl -O OpenFlow13 --no-names ARGS`'s output (ports as numbers, as OpenFlow has
    them). `check`: a failure raises rather than reading as an empty table."""
    return subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "--no-names"] + list(args),
                          capture_output=True, text=True, check=check, timeout=10).stdout


def wait_for(predicate, timeout, interval=0.05):
    """Polls `predicate` every `interval` seconds until it is true or `timeout` seconds passed;
    returns its last value. The deadline is on the monotonic clock: a clock step cannot stretch or
    cut it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def terminate(proc, timeout=10):
    """Stops a process by PID: SIGTERM, and SIGKILL if it is still there after `timeout`
    seconds. Its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class Lines:
    """Reads a process's stdout line by line in the background."""

    def __init__(self, stream):
        self.q = queue.Queue()
        self.seen = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream):
        for raw in iter(stream.readline, b""):
            self.q.put(raw.decode(errors="replace").rstrip("\n"))
        self.q.put(None)

    def next(self, timeout=10):
        try:
            line = self.q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no output within %ss (seen so far: %s)" % (timeout, self.seen))
        if line is None:
            raise AssertionError("process ended (seen so far: %s)" % self.seen)
        self.seen.append(line)
        return line

    def expect(self, prefix, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            line = self.next(max(0.01, deadline - time.monotonic()))
            if line.startswith(prefix):
                return line


class Proxy:
    """One mqtt_proxy process in a Mininet host, its output in a log file. `peers`: the addresses
    it was given with -F."""

    def __init__(self, host, binary, args, log_path, peers=()):
        self.host = host
        self.args = args
        self.peers = list(peers)
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = host.popen([binary] + list(args), stdout=self._log, stderr=subprocess.STDOUT)
        self.returncode = None

    def log(self, since=0):
        """The log, from byte offset `since` on (log_size() marks a point to read on from)."""
        with open(self.log_path, "rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")

    def log_size(self):
        """Where the log ends now, in bytes: a `since` for log() and the waits below."""
        return os.path.getsize(self.log_path)

    def wait_ready(self, timeout=15):
        ok = wait_for(lambda: " ready: " in self.log() or self.proc.poll() is not None, timeout)
        if not ok or self.proc.poll() is not None:
            raise RuntimeError("proxy on %s did not become ready:\n%s" % (self.host.name,
                                                                           self.log()[-3000:]))

    def wait_log(self, text, timeout=10):
        return wait_for(lambda: text in self.log(), timeout)

    def wait_peer_interest(self, topic, subscribed=True, count=1, timeout=10, peer=None, since=0):
        """Waits until this proxy logged the `count`-th peer SUBSCRIBE (or UNSUBSCRIBE) for
        `topic` from `peer` (by default its only peer) after byte `since` of its log; returns whether
        it did.

        The barrier before publishing to a subscriber across the peers: the line is logged (at
        info level) once the interest is recorded, so a PUBLISH this proxy receives afterwards is
        forwarded. Counting from a `since` taken before the change keeps the periodic refresh
        (a SUBSCRIBE again for a filter still held) and earlier changes out of the count."""
        return wait_for(lambda: self.peer_interest_lines(topic, subscribed, peer, since) >= count,
                        timeout)

    def peer_interest_lines(self, topic, subscribed=True, peer=None, since=0):
        """How many peer SUBSCRIBE (or UNSUBSCRIBE) lines for `topic` from `peer` the log has
        after byte `since`."""
        if peer is None:
            if len(self.peers) != 1:
                raise ValueError("proxy on %s has %d peers: name one" % (self.host.name,
                                                                        len(self.peers)))
            peer = self.peers[0]
        needle = "peer %s %s topic=%s\n" % (peer, "SUBSCRIBE" if subscribed else "UNSUBSCRIBE",
                                             topic)
        return self.log(since).count(needle)

    def peer_filters(self, peer):
        """The filters this proxy holds for `peer`, replayed from its log: a peer SUBSCRIBE adds
        one, a peer UNSUBSCRIBE or "interest mended, dropped" (the interest check found the peer
        no longer has it) removes it, and "its N filter(s) forgotten" (the peer restarted or its
        interest expired) removes them all."""
        held = set()
        prefix = "peer %s " % peer
        for line in self.log().splitlines():
            at = line.find(prefix)
            if at < 0:
                continue
            rest = line[at + len(prefix):]
            if rest.startswith("SUBSCRIBE topic="):
                held.add(rest[len("SUBSCRIBE topic="):])
            elif rest.startswith("UNSUBSCRIBE topic="):
                held.discard(rest[len("UNSUBSCRIBE topic="):])
            elif rest.startswith("interest mended, dropped topic="):
                held.discard(rest[len("interest mended, dropped topic="):])
            elif rest.endswith(" filter(s) forgotten"):
                held.clear()
        return held

    def stop(self, timeout=10):
        if self.returncode is None:
            if self.proc.poll() is None:
                try:
                    self.peak_rss_kib = stats.process_stats(self.proc.pid)[2]
                except (FileNotFoundError, ProcessLookupError):
                    pass
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.returncode = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.returncode = self.proc.wait()
            self._log.close()
        return self.returncode

    def kill(self):
        """SIGKILL, as a crash or an impatient researcher would: nothing is cleaned up."""
        if self.returncode is None:
            self.proc.kill()
            self.returncode = self.proc.wait()
            self._log.close()
        return self.returncode

    def final_counters(self):
        """The counters the proxy logs when it exits, as a dict."""
        return self.logged_counters("final counters")

    def logged_counters(self, what="stats"):
        """The last counters the proxy logged under `what` ("stats": every --stats-interval,
        "final counters": at exit), as a dict. (The per-peer lines logged after them read
        "WHAT of peer ADDR: ...", see peer_status(), so they never match.)"""
        tag = what + ":"
        for line in reversed(self.log().splitlines()):
            if tag in line:
                rest = line.split(tag, 1)[1]
                return {k: int(v) for k, v in (f.split("=", 1) for f in rest.split() if "=" in f)}
        return {}

    def peer_status(self, what="stats"):
        """The per-peer lines of every counter log under `what`, in order: (peer address, state,
        topic filters this proxy held for the peer then)."""
        line = re.compile(r"%s of peer (\S+): (.+), (\d+) filter\(s\) held for it" % re.escape(what))
        return [(m.group(1), m.group(2), int(m.group(3))) for m in line.finditer(self.log())]


class Mosquitto:
    """A Mosquitto broker in a Mininet host, for the benchmarks' baselines. `config` is the text of
    its configuration file; it must contain a listener on port 1883 that allows anonymous clients."""

    def __init__(self, host, config, workdir):
        self.host = host
        conf = os.path.join(workdir, "mosquitto-%s.conf" % host.name)
        with open(conf, "w") as f:
            f.write(config)
        self.log_path = os.path.join(workdir, "mosquitto-%s.log" % host.name)
        self._log = open(self.log_path, "wb")
        # Its default descriptor limit (1024) is below the benchmarks' connection counts.
        self.proc = host.popen(["bash", "-c", "ulimit -n $(ulimit -Hn) && exec mosquitto -c " + conf],
                               stdout=self._log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid

        def accepts():
            probe = host.popen(["mosquitto_pub", "-h", "127.0.0.1", "-t", "probe", "-m", "x"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return probe.wait(5) == 0

        if not wait_for(accepts, 10, interval=0.1):
            self.stop()
            with open(self.log_path) as f:
                raise RuntimeError("mosquitto did not start on %s: %s" % (host.name, f.read()))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self._log.close()


class LossRules:
    """iptables rules dropping a random share of MQTT segments both ways on some hosts (there is no
    netem here).

    By default they drop TCP to and from port 1883 on each host's OUTPUT and INPUT chains (the
    clients' hosts). `proto`, `port` and `chains` (pairs of chain and port match) choose other
    traffic: the peer link's datagrams are dropped with
    `proto="udp", chains=(("INPUT", "--dport"),)` on both proxies' hosts, on arrival only: a UDP
    datagram dropped in OUTPUT fails its sendto() with EPERM, so the sender would know of the
    loss, which the network never tells it."""

    def __init__(self, testbed, hosts, probability, proto="tcp", port=1883,
                 chains=(("OUTPUT", "--dport"), ("INPUT", "--sport"))):
        self.tb = testbed
        self.rules = []
        for host in hosts:
            for chain, match in chains:
                rule = [chain, "-p", proto, match, str(port), "-m", "statistic", "--mode",
                        "random", "--probability", str(probability), "-j", "DROP"]
                rc, out, err = testbed.run(host, ["iptables", "-I"] + rule)
                if rc != 0:
                    self.remove()
                    raise RuntimeError("iptables on %s: %s %s" % (host, out, err))
                self.rules.append((host, rule))

    def dropped(self):
        """Segments the rules dropped so far."""
        total = 0
        for host in sorted({h for h, _ in self.rules}):
            _, out, _ = self.tb.run(host, ["iptables", "-L", "-v", "-n", "-x"])
            total += sum(int(line.split()[0]) for line in out.splitlines()
                         if "statistic mode random" in line and "DROP" in line)
        return total

    def remove(self):
        for host, rule in self.rules:
            self.tb.run(host, ["iptables", "-D"] + rule)
        self.rules = []


class Capture:
    """tcpdump on one host interface, writing a pcap of MQTT traffic (TCP and UDP)."""

    def __init__(self, host, iface, path, bpf="tcp port 1883 or udp port 1883"):
        self.path = path
        # Immediate mode: otherwise libpcap hands packets over only after a 1 s buffer timeout and
        # a test reading the pcap races the capture.
        # A 2 KiB snap length and a 32 MiB buffer: with offloads reported on, a full snap length makes
        # each ring slot 64 KiB and the ring holds ~31 frames, so bursts would be lost.
        self.proc = host.popen(["tcpdump", "--immediate-mode", "-i", iface, "-U", "-s", "2048",
                                "-B", "32768", "-w", path, bpf],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: os.path.exists(path) and os.path.getsize(path) > 0, 5)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


SKIP = 77  # ctest's SKIP_RETURN_CODE for the Mininet suites


def run_suite(name, case, args, mininet_available):
    """Runs the unittest case `case` of a Mininet suite (e2e_test.py, mesh_test.py, ...) as its
    script's main(): skips (77) when not root or without Mininet, Open vSwitch or the Mosquitto
    clients, fails when args.proxy is not built; keeps args.artifacts (logs, pcaps) only when a
    test failed. args.pattern (-k) selects tests."""
    if os.geteuid() != 0:
        print("%s: skipped: needs root" % name, file=sys.stderr)
        return SKIP
    if not mininet_available:
        print("%s: skipped: Mininet is not installed (scripts/setup.sh)" % name, file=sys.stderr)
        return SKIP
    if shutil.which("ovs-vsctl") is None or shutil.which("mosquitto_pub") is None:
        print("%s: skipped: openvswitch-switch or mosquitto-clients missing" % name,
              file=sys.stderr)
        return SKIP
    if not os.access(args.proxy, os.X_OK):
        print("%s: %s is not built" % (name, args.proxy), file=sys.stderr)
        return 1
    shutil.rmtree(args.artifacts, ignore_errors=True)
    os.makedirs(args.artifacts)
    loader = unittest.TestLoader()
    if args.pattern:
        loader.testNamePatterns = ["*%s*" % args.pattern]
    suite = loader.loadTestsFromTestCase(case)
    started = time.monotonic()
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    print("%s: %d tests in %.1f s" % (name, result.testsRun, time.monotonic() - started))
    if result.wasSuccessful():
        shutil.rmtree(args.artifacts, ignore_errors=True)
        return 0
    print("%s: logs kept in %s" % (name, args.artifacts))
    return 1
