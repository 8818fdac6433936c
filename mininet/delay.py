"""Link delay for the testbed on a kernel without netem (docs/testbed-delay.md).

The prototype's topology delayed every host link by -d and every switch-to-switch link by -D
through Mininet's TCLink, that is netem. This kernel has no netem (environment.md) but has NFQUEUE:
the project's delay element (build/mqtt_proxy_delay, src/tools/delay_main.cpp) holds each packet a
host receives (or sends) for a delay chosen by the address of the other end. Given in each host
the sum of the link delays along the path to every other host, it reproduces the one-way delay of
every path, which is what netem on every link gives (tree_path_delays).

Nothing here imports Mininet: a node is a Mininet host (its `popen` and `name`), a net a Mininet
net (its `hosts`, `switches` and `links`), so this can be tested without root.
"""

import functools
import heapq
import os
import select
import shutil
import signal
import subprocess
import time

RULE_COMMENT = "mqtt_proxy delay"
MAX_MS = 3600000  # the element's limit: one hour


class DelayError(RuntimeError):
    """The delay element cannot run: its binary is missing, its queue cannot be bound, or the
    kernel refuses the NFQUEUE rule. The message says which."""


@functools.lru_cache(maxsize=None)
def netem_available():
    """Whether `tc qdisc add ... netem` works on this kernel. Tried on the loopback of a network
    namespace made for the purpose (unshare), which goes away with the command: no existing
    interface is touched. Without root the namespace comes with a user namespace of its own."""
    if shutil.which("tc") is None or shutil.which("unshare") is None:
        return False
    userns = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    try:
        r = subprocess.run(["unshare"] + userns + ["--net", "tc", "qdisc", "add", "dev", "lo",
                                                   "root", "netem", "delay", "1ms"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def ms_text(ms):
    """A delay in milliseconds as the element's command line takes it (up to six decimals)."""
    ms = float(ms)
    if not 0 <= ms <= MAX_MS:
        raise ValueError("a delay of %r ms is outside 0..%d ms" % (ms, MAX_MS))
    text = ("%.6f" % ms).rstrip("0").rstrip(".")
    return text or "0"


class DelayElement:
    """The delay element in one Mininet host: every packet the host receives on `interface`
    goes through NFQUEUE queue `queue_num` (an iptables rule in the host's namespace, commented
    "mqtt_proxy delay") to `binary`, which holds it for `table[IP of the other end]` ms
    (`default_ms` for other addresses) and then lets it go. Queues are per network namespace, so
    every host may use the same number. The element's stderr goes to `log_path`. `max_packets`:
    how many it holds at once (its --max-packets; beyond, packets are dropped and counted).

    `direction`: "ingress" (the default) delays what the host receives, by source address
    (iptables PREROUTING -i); "egress" what it sends, by destination (POSTROUTING -o). Both give
    the same one-way path delays with the same table (a path's delay is the same both ways), but
    only ingress keeps TCP's throughput: a packet held on the way out still counts against its
    socket, and TCP Small Queues lets a flow have about two packets below the socket, so a TCP
    flow through an egress element sends about two packets per delay (0.6 MB/s at 10 ms, where
    ingress carried 40 MB/s, as much as undelayed). netem orphans the packets it holds, so it has
    no such effect (docs/testbed-delay.md, Limits)."""

    DIRECTIONS = ("ingress", "egress")

    def __init__(self, node, interface, table, default_ms, queue_num, binary, log_path,
                 max_packets=None, direction="ingress", matches=((),)):
        if direction not in self.DIRECTIONS:
            raise ValueError("direction must be egress or ingress, not %r" % (direction,))
        self.direction = direction
        # One rule per entry, each the iptables match arguments of the packets it queues (the
        # default, one empty entry: every IPv4 packet on the interface).
        self.matches = [list(m) for m in matches]
        self.node = node
        self.interface = interface
        self.table = dict(table)
        self.default_ms = default_ms
        self.queue_num = int(queue_num)
        self.binary = binary
        self.log_path = log_path
        self.max_packets = max_packets
        self.proc = None
        self.counters = None
        self.returncode = None
        self._log = None
        self._out = b""
        self._rule_installed = False

    def command(self):
        args = [self.binary, "--queue", str(self.queue_num), "--default-delay",
                ms_text(self.default_ms)]
        if self.max_packets is not None:
            args += ["--max-packets", str(int(self.max_packets))]
        if self.direction == "ingress":
            args += ["--match", "source"]
        for ip, ms in sorted(self.table.items()):
            args += ["--delay", "%s=%s" % (ip, ms_text(ms))]
        return args

    def rules(self):
        where = (["POSTROUTING", "-o"] if self.direction == "egress" else ["PREROUTING", "-i"])
        return [where + [self.interface] + match + ["-m", "comment", "--comment", RULE_COMMENT,
                                                    "-j", "NFQUEUE", "--queue-num",
                                                    str(self.queue_num)]
                for match in self.matches]

    def start(self, timeout=10):
        """Starts the element and installs the rule; raises DelayError when either fails. The
        element is started first: packets that reach a rule whose queue nobody has bound are
        dropped. The rule has no --queue-bypass, so if the element dies the host's traffic stops
        rather than flowing on undelayed, which an experiment could not tell from a working
        delay."""
        where = "%s (queue %d)" % (self.node.name, self.queue_num)
        if not os.access(self.binary, os.X_OK):
            raise DelayError("the NFQUEUE delay element %s is not built (cmake --build build); "
                             "it stands in for netem, which this kernel lacks" % self.binary)
        self._log = open(self.log_path, "wb")
        try:
            self.proc = self.node.popen(self.command(), stdout=subprocess.PIPE,
                                        stderr=self._log)
        except OSError as e:
            self._log.close()
            raise DelayError("cannot start the delay element on %s: %s" % (where, e))
        if not self._wait_ready(timeout):
            self._stop_process()
            raise DelayError("the delay element on %s did not start: %s" % (where,
                                                                             self.log_tail()))
        rc, out = self._iptables("-A")
        if rc != 0:
            self._stop_process()
            raise DelayError("iptables refused the NFQUEUE rule on %s %s (does this kernel have "
                             "NFQUEUE?): %s" % (self.node.name, self.interface, out.strip()))
        self._rule_installed = True
        return self

    def stop(self, timeout=10):
        """Removes the rule, then stops the element (SIGTERM: it lets every packet it still
        holds go); returns its counters (packets, released, max_held, overflowed, ...)."""
        if self._rule_installed:
            self._iptables("-D")
            self._rule_installed = False
        self._stop_process(timeout)
        return self.counters

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_tail(self, lines=5):
        try:
            with open(self.log_path, errors="replace") as f:
                text = f.read().strip()
        except OSError:
            return "(no log)"
        return " | ".join(text.splitlines()[-lines:]) or "(nothing logged)"

    # -- internals -------------------------------------------------------------------------------

    def _iptables(self, action):
        # -w: the xtables lock is one file for every namespace, and other hosts' rules are being
        # changed at the same time.
        rc, text = 0, ""
        for rule in self.rules():
            p = self.node.popen(["iptables", "-w", "5", "-t", "mangle", action] + rule,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            out, _ = p.communicate(timeout=30)
            rc, text = rc or p.returncode, text + out.decode(errors="replace")
        return rc, text

    def _read_stdout(self, deadline):
        """Reads what the element printed until `deadline` (monotonic) or its end; false at the
        end of its output."""
        fd = self.proc.stdout.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return True
            chunk = os.read(fd, 4096)
            if not chunk:
                return False
            self._out += chunk
            if self._out.endswith(b"\n"):
                return True

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while b"ready\n" not in self._out:
            if not self._read_stdout(deadline) or time.monotonic() >= deadline:
                return b"ready\n" in self._out
        return True

    def _stop_process(self, timeout=10):
        if self.proc is None or self.returncode is not None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.returncode = self.proc.wait()
        self._out += self.proc.stdout.read()
        self.proc.stdout.close()
        self._log.close()
        for line in self._out.decode(errors="replace").splitlines():
            if line.startswith("counters:"):
                self.counters = {k: int(v) for k, v in
                                 (f.split("=", 1) for f in line.split()[1:] if "=" in f)}


def tree_path_delays(net, host_ms, switch_ms):
    """For every host of the Mininet `net`, by host name: {other host's IP: one-way delay in ms}
    over the shortest path to every other host, summing host_ms for each link with a host at one
    end and switch_ms for each switch-to-switch link. Hosts do not forward: no path crosses one.

    Given to a DelayElement in each host (ingress: by source, so each packet is delayed where it
    arrives; egress: by destination, where it leaves; the distances are symmetric), this is
    netem's one-way delay on every link of the path. What differs from delaying each link: the
    whole delay is spent in one place, so the switches see traffic at the sender's pace (ingress)
    or at the delayed pace all along (egress), not as each link delivered it (no queueing is
    placed per link); packets that no IPv4 rule sees (ARP) are not delayed, and those from or to
    no host of the tree get the element's default delay."""
    hosts = {h.name: h for h in net.hosts}
    neighbours = {}
    for link in net.links:
        a, b = link.intf1.node.name, link.intf2.node.name
        weight = host_ms if a in hosts or b in hosts else switch_ms
        neighbours.setdefault(a, []).append((b, weight))
        neighbours.setdefault(b, []).append((a, weight))
    result = {}
    for src in hosts:
        dist = {src: 0.0}
        heap = [(0.0, src)]
        while heap:
            d, name = heapq.heappop(heap)
            if d > dist.get(name, float("inf")):
                continue
            if name in hosts and name != src:
                continue  # a destination, not a way through
            for nxt, weight in neighbours.get(name, ()):
                if d + weight < dist.get(nxt, float("inf")):
                    dist[nxt] = d + weight
                    heapq.heappush(heap, (d + weight, nxt))
        result[src] = {hosts[dst].IP(): round(d, 6) for dst, d in dist.items()
                       if dst in hosts and dst != src}
    return result


def describe(mode, host_ms, switch_ms):
    """One line telling the user how link delay is made: mode "none", "netem" (on the links) or
    "nfqueue" (the delay element in every host)."""
    delays = "host links %g ms, switch-to-switch links %g ms one-way" % (host_ms, switch_ms)
    if mode == "none":
        return "link delay: none"
    if mode == "netem":
        return "link delay: netem on every link (%s)" % delays
    if mode == "nfqueue":
        return ("link delay: this kernel has no netem, so each host's NFQUEUE delay element "
                "(mqtt_proxy_delay) holds what it receives for the sum of the link delays on the "
                "path from its sender (%s; docs/testbed-delay.md)" % delays)
    raise ValueError("unknown delay mode %r (none, netem or nfqueue)" % mode)
