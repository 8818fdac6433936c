"""The reference testbed (design brief section 4), for the demo, the end-to-end tests and experiments.

A Mininet tree of Open vSwitch switches (userspace datapath, OpenFlow 1.3) under the project's os-ken
learning switch: root s1, edge switches below it, hosts h<i> = 192.168.1.(100+i)/24. Depth 2 and fanout
2 give the reference: h1, h2 on s2 and h3, h4 on s3. Links have checksum offload off (TCLink txo/rxo):
with the userspace datapath, TCP does not get through otherwise (environment.md).

Runs only under Debian's /usr/bin/python3, as root. Everything started here is stopped here, by PID;
nothing calls `mn -c`, which would delete every bridge on the machine.
"""

import contextlib
import os
import re
import signal
import socket
import struct
import subprocess
import time
from functools import partial

from mininet.link import TCLink
from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import OVSSwitch, RemoteController
from mininet.topo import Topo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTROLLER_APP = os.path.join(REPO, "mininet", "controller", "learning_switch.py")
DEFAULT_PROXY = os.path.join(REPO, "build", "mqtt_proxy")
USER, PASSWORD = "jorge", "passwd"


def host_ip(i):
    return "192.168.1.%d" % (100 + i)


class TreeTopo(Topo):
    """s1 at the root; switches numbered depth-first, hosts left to right (as Mininet's TreeTopo)."""

    def build(self, depth=2, fanout=2):  # pylint: disable=arguments-differ
        self._switches = 0
        self._hosts = 0
        self._tree(depth, fanout)

    def _tree(self, depth, fanout):
        self._switches += 1
        switch = self.addSwitch("s%d" % self._switches)
        for _ in range(fanout):
            if depth > 1:
                child = self._tree(depth - 1, fanout)
            else:
                self._hosts += 1
                if self._hosts > 154:
                    raise ValueError("more than 154 hosts do not fit 192.168.1.101-254")
                child = self.addHost("h%d" % self._hosts, ip=host_ip(self._hosts) + "/24")
            self.addLink(switch, child)
        return switch


def free_tcp_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, interval=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def ensure_ovs():
    if subprocess.run(["ovs-vsctl", "show"], capture_output=True).returncode == 0:
        return
    # No systemd on these machines: start the daemons directly (idempotent).
    subprocess.run(["/usr/share/openvswitch/scripts/ovs-ctl", "--system-id=random", "start"],
                   capture_output=True)
    if subprocess.run(["ovs-vsctl", "show"], capture_output=True).returncode != 0:
        raise RuntimeError("Open vSwitch is not running and could not be started")


class Proxy:
    """One mqtt_proxy process in a Mininet host, its output in a log file."""

    def __init__(self, host, binary, args, log_path):
        self.host = host
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = host.popen([binary] + list(args), stdout=self._log, stderr=subprocess.STDOUT)
        self.returncode = None

    def log(self):
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()

    def wait_ready(self, timeout=15):
        ok = wait_for(lambda: " ready: " in self.log() or self.proc.poll() is not None, timeout)
        if not ok or self.proc.poll() is not None:
            raise RuntimeError("proxy on %s did not become ready:\n%s" % (self.host.name,
                                                                           self.log()[-3000:]))

    def wait_log(self, text, timeout=10):
        return wait_for(lambda: text in self.log(), timeout)

    def stop(self, timeout=10):
        if self.returncode is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.returncode = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.returncode = self.proc.wait()
            self._log.close()
        return self.returncode

    def final_counters(self):
        """The counters the proxy logs when it exits, as a dict."""
        for line in reversed(self.log().splitlines()):
            if "final counters:" in line:
                fields = line.split("final counters:", 1)[1].split()
                return {k: int(v) for k, v in (f.split("=", 1) for f in fields if "=" in f)}
        return {}


def process_stats(pid):
    """(CPU seconds, RSS KiB, peak RSS KiB) of a process, from /proc.

    CPU time is the sum of its threads' schedstat run time (nanoseconds): /proc/PID/stat counts
    in clock ticks of 10 ms, too coarse for a process that runs a few ms per second."""
    cpu = 0.0
    for task in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, task)) as f:
                cpu += int(f.read().split()[0]) / 1e9
        except FileNotFoundError:  # the thread ended meanwhile
            pass
    rss = hwm = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return cpu, rss, hwm


def switch_stats():
    """(CPU seconds of ovs-vswitchd, frames received by all switch ports) right now.

    With the userspace datapath every frame between two hosts is a packet ovs-vswitchd reads from
    one port socket and writes to another, so these two say what a workload costs the switches."""
    with open("/var/run/openvswitch/ovs-vswitchd.pid") as f:
        cpu = process_stats(int(f.read().strip()))[0]
    frames = 0
    for name in os.listdir("/sys/class/net"):
        if re.fullmatch(r"s\d+-eth\d+", name):
            with open("/sys/class/net/%s/statistics/rx_packets" % name) as f:
                frames += int(f.read())
    return cpu, frames


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
    netem here)."""

    def __init__(self, testbed, hosts, probability):
        self.tb = testbed
        self.rules = []
        for host in hosts:
            for chain, port in (("OUTPUT", "--dport"), ("INPUT", "--sport")):
                rule = [chain, "-p", "tcp", port, "1883", "-m", "statistic", "--mode", "random",
                        "--probability", str(probability), "-j", "DROP"]
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


def read_udp_datagrams(pcap_path, port=1883):
    """(time, src ip, dst ip, payload) of every IPv4 UDP datagram to or from `port` in a pcap."""
    out = []
    try:
        with open(pcap_path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return out
    if len(data) < 24:
        return out
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nanos = magic in (0xA1B23C4D, 0x4D3CB2A1)
    off = 24
    while off + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        frame = data[off + 16:off + 16 + caplen]
        off += 16 + caplen
        if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00":
            continue
        ihl = (frame[14] & 0x0F) * 4
        if frame[14 + 9] != 17:
            continue
        udp = frame[14 + ihl:]
        sport, dport, length = struct.unpack(">HHH", udp[:6])
        if port not in (sport, dport):
            continue
        src = socket.inet_ntoa(frame[26:30])
        dst = socket.inet_ntoa(frame[30:34])
        out.append((sec + frac / (1e9 if nanos else 1e6), src, dst, udp[8:length]))
    return out


def mqtt_packet_summary(payload):
    """('PUBLISH', topic) / ('SUBSCRIBE', [filters]) / ('UNSUBSCRIBE', [filters]) for a datagram."""
    kind = payload[0] >> 4
    i, length, shift = 1, 0, 0
    while True:
        b = payload[i]
        length |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            break
        shift += 7
    body = payload[i:i + length]

    def strings(b):
        out = []
        while len(b) >= 2:
            n = struct.unpack(">H", b[:2])[0]
            out.append(b[2:2 + n].decode("utf-8", "replace"))
            b = b[2 + n:]
            if kind == 8:
                b = b[1:]  # requested QoS
        return out

    if kind == 3:
        n = struct.unpack(">H", body[:2])[0]
        return ("PUBLISH", body[2:2 + n].decode("utf-8", "replace"))
    if kind == 8:
        return ("SUBSCRIBE", strings(body[2:]))
    if kind in (10, 11):
        return ("UNSUBSCRIBE", strings(body[2:]))
    return ("TYPE%d" % kind, None)


# The userspace datapath reads every switch port through an AF_PACKET socket of the default size
# (net.core.rmem_default, about 200 KiB). A burst of 1000 back-to-back datagrams then lost 49-74% of
# them between h4 and h1; with 4 MiB none. The default is raised only while the switches create
# their sockets.
SWITCH_SOCKET_BUFFER = 4 * 1024 * 1024


@contextlib.contextmanager
def socket_buffer_default(size):
    paths = ["/proc/sys/net/core/rmem_default", "/proc/sys/net/core/wmem_default"]
    old = []
    for path in paths:
        with open(path) as f:
            old.append(f.read().strip())
    try:
        for path, value in zip(paths, old):
            if int(value) < size:
                with open(path, "w") as f:
                    f.write(str(size))
        yield
    finally:
        for path, value in zip(paths, old):
            with open(path, "w") as f:
                f.write(value)


class Testbed:
    def __init__(self, artifacts, depth=2, fanout=2, proxy_binary=DEFAULT_PROXY, verbose=False):
        self.artifacts = artifacts
        self.depth = depth
        self.fanout = fanout
        self.proxy_binary = proxy_binary
        self.net = None
        self.controller = None
        self.proxies = []
        self.captures = []
        self.processes = []
        setLogLevel("info" if verbose else "warning")

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self):
        if os.geteuid() != 0:
            raise PermissionError("the testbed needs root")
        os.makedirs(self.artifacts, exist_ok=True)
        ensure_ovs()
        topo = TreeTopo(depth=self.depth, fanout=self.fanout)
        existing = set(subprocess.run(["ovs-vsctl", "list-br"], capture_output=True,
                                      text=True).stdout.split())
        clash = sorted(existing & set(topo.switches()))
        if clash:
            raise RuntimeError("Open vSwitch bridges %s already exist; not touching them (remove "
                               "them with ovs-vsctl del-br if they are stale)" % ", ".join(clash))
        port = free_tcp_port()
        self._controller_log = open(os.path.join(self.artifacts, "controller.log"), "wb")
        self.controller = subprocess.Popen(
            ["/usr/bin/osken-manager", "--ofp-listen-host", "127.0.0.1", "--ofp-tcp-listen-port",
             str(port), CONTROLLER_APP], stdout=self._controller_log, stderr=subprocess.STDOUT)

        def listening():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        if not wait_for(listening, 20):
            self.stop()
            raise RuntimeError("os-ken controller did not start (see controller.log)")
        self.net = Mininet(topo=topo,
                           switch=partial(OVSSwitch, datapath="user", protocols="OpenFlow13"),
                           link=partial(TCLink, txo=False, rxo=False),
                           controller=None, autoSetMacs=True, waitConnected=False)
        self.net.addController(RemoteController("c0", ip="127.0.0.1", port=port))
        try:
            with socket_buffer_default(SWITCH_SOCKET_BUFFER):
                self.net.start()
            if not self.net.waitConnected(timeout=30):
                raise RuntimeError("switches did not connect to the controller")
            # Every host answers ARP and the switches have learnt the MACs before anything is timed.
            loss = self.net.pingAll(timeout=2)
            if loss > 0:
                loss = self.net.pingAll(timeout=2)
            if loss > 0:
                raise RuntimeError("hosts cannot reach each other (%.0f%% ping loss)" % loss)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        for p in self.proxies:
            p.stop()
        for c in self.captures:
            c.stop()
        for p in self.processes:
            if p.poll() is None:
                p.kill()
                p.wait()
        if self.net is not None:
            self.net.stop()
            self.net = None
        if self.controller is not None:
            self.controller.terminate()
            try:
                self.controller.wait(10)
            except subprocess.TimeoutExpired:
                self.controller.kill()
                self.controller.wait()
            self.controller = None
            self._controller_log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- helpers ---------------------------------------------------------------------------------

    def host(self, name):
        return self.net.get(name)

    def start_proxy(self, host_name, peers=(), extra=(), auth=True, ready_timeout=15, port=1883):
        """A proxy serving MQTT on TCP `port` and peering on UDP `port`."""
        args = ["-t", str(port), "-U", str(port)]
        if auth:
            args += ["-u", USER, "-p", PASSWORD]
        for peer in peers:
            args += ["-F", peer]
        args += list(extra)
        log_path = os.path.join(self.artifacts, "proxy-%s%s.log"
                                % (host_name, "" if port == 1883 else "-%d" % port))
        proxy = Proxy(self.host(host_name), self.proxy_binary, args, log_path)
        self.proxies.append(proxy)
        proxy.wait_ready(ready_timeout)
        return proxy

    def capture(self, host_name):
        path = os.path.join(self.artifacts, "%s.pcap" % host_name)
        cap = Capture(self.host(host_name), "%s-eth0" % host_name, path)
        self.captures.append(cap)
        return cap

    def popen(self, host_name, args, **kwargs):
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        p = self.host(host_name).popen(list(args), **kwargs)
        self.processes.append(p)
        return p

    def run(self, host_name, args, timeout=30, input_text=None):
        """Runs a command in a host; returns (returncode, stdout, stderr)."""
        p = self.popen(host_name, args, stdin=subprocess.PIPE if input_text is not None else None)
        try:
            out, err = p.communicate(input=input_text.encode() if input_text is not None else None,
                                     timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            return (None, out.decode(errors="replace"), err.decode(errors="replace"))
        return (p.returncode, out.decode(errors="replace"), err.decode(errors="replace"))

    def raw_prerouting_rules(self, host_name):
        rc, out, _ = self.run(host_name, ["iptables", "-t", "raw", "-S", "PREROUTING"])
        return [line for line in out.splitlines() if "mqtt_proxy" in line]
