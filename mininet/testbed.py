"""The reference testbed (design brief section 4), for the demo, the end-to-end tests and experiments.

A Mininet tree of Open vSwitch switches (userspace datapath, OpenFlow 1.3) under the project's os-ken
learning switch: root s1, edge switches below it, hosts h<i> = 192.168.1.(100+i)/24. Depth 2 and fanout
2 give the reference: h1, h2 on s2 and h3, h4 on s3. Links have checksum offload off (TCLink txo/rxo):
with the userspace datapath, TCP does not get through otherwise (environment.md).

Runs only under Debian's /usr/bin/python3, as root. Everything started here is stopped here, by PID;
nothing calls `mn -c`, which would delete every bridge on the machine.

Beside it, without Mininet: procs.py (the processes started in the hosts), pcapread.py (the pcaps and
the MQTT packets in them) and stats.py (CPU and memory figures from /proc).
"""

import contextlib
import os
import re
import socket
import subprocess
from functools import partial

from mininet.link import Intf, TCLink
from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import OVSSwitch, RemoteController
from mininet.topo import Topo

import delay
from procs import Capture, Proxy, wait_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTROLLER_APP = os.path.join(REPO, "mininet", "controller", "learning_switch.py")
M2M_CONTROLLER_APP = os.path.join(REPO, "mininet", "controller", "mqtt2multicast.py")
# A proxy's MQTT2MULTICAST options under that app: its virtual address and the ports of the
# original's mqtt_proxy_m2m.sh.
M2M_PROXY_ARGS = ["-s", "192.168.1.100", "-S", "11883", "-C", "11882"]
DEFAULT_PROXY = os.path.join(REPO, "build", "mqtt_proxy")
DEFAULT_DELAY = os.path.join(REPO, "build", "mqtt_proxy_delay")
USER, PASSWORD = "jorge", "passwd"


def host_ip(i):
    return "192.168.1.%d" % (100 + i)


MAX_HOSTS = 154  # h1..h154 = 192.168.1.101-254


def host_mac(i):
    """h<i>'s MAC: its number in hexadecimal in the last two bytes (the prototype's topology
    wrote the decimal number into one byte, which is no MAC from h100 on)."""
    return "00:00:00:00:%02x:%02x" % (i >> 8, i & 0xFF)


def tree_hosts(fanouts):
    n = 1
    for f in fanouts:
        n *= f
    return n


class TreeTopo(Topo):
    """A tree numbered as the prototype's topology numbers it: s1 at the root, then the switches
    level by level (breadth first), and hosts h1..hN left to right. Links are added as the
    prototype adds them, switch-to-switch links level by level, then the hosts, so the ports are
    the prototype's too (tests derive ports rather than assume them).

    `fanouts` gives the fanout of each level from the root (the topology command's -f N -f M; the
    last is the number of hosts per edge switch); `depth` and `fanout` make a uniform tree. With
    `link_delays` (netem, where the kernel has it) host links get `host_delay_ms` and
    switch-to-switch links `switch_delay_ms`; otherwise the testbed emulates the delays at the
    hosts (delay.py)."""

    def build(self, depth=2, fanout=2, fanouts=None, host_delay_ms=0.0,  # pylint: disable=arguments-differ
              switch_delay_ms=0.0, link_delays=False):
        fanouts = list(fanouts) if fanouts else [fanout] * depth
        if not fanouts or min(fanouts) < 1:
            raise ValueError("every fanout must be at least 1")
        if tree_hosts(fanouts) > MAX_HOSTS:
            raise ValueError("a tree of fanouts %s has %d hosts; the addressing scheme "
                             "(h<i> = 192.168.1.(100+i)/24) has room for %d"
                             % (" x ".join(map(str, fanouts)), tree_hosts(fanouts), MAX_HOSTS))
        host_opts = {"delay": "%gms" % host_delay_ms} if link_delays and host_delay_ms else {}
        switch_opts = ({"delay": "%gms" % switch_delay_ms}
                       if link_delays and switch_delay_ms else {})
        level = [self.addSwitch("s1")]
        count = 1
        for f in fanouts[:-1]:
            below = []
            for parent in level:
                for _ in range(f):
                    count += 1
                    child = self.addSwitch("s%d" % count)
                    self.addLink(parent, child, **switch_opts)
                    below.append(child)
            level = below
        i = 0
        for edge in level:
            for _ in range(fanouts[-1]):
                i += 1
                host = self.addHost("h%d" % i, ip=host_ip(i) + "/24", mac=host_mac(i))
                self.addLink(edge, host, **host_opts)


def free_tcp_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_ovs():
    if subprocess.run(["ovs-vsctl", "show"], capture_output=True).returncode == 0:
        return
    # No systemd on these machines: start the daemons directly (idempotent).
    subprocess.run(["/usr/share/openvswitch/scripts/ovs-ctl", "--system-id=random", "start"],
                   capture_output=True)
    if subprocess.run(["ovs-vsctl", "show"], capture_output=True).returncode != 0:
        raise RuntimeError("Open vSwitch is not running and could not be started")


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


class QuietRemoteController(RemoteController):
    """RemoteController without Mininet's check that the controller listens: it pipes telnet's
    output through a UTF-8 decoder, and when os-ken's OpenFlow HELLO (binary) reaches telnet
    first, the decoder raises and the testbed fails to start. start() has already waited for
    the port with a plain connect()."""

    def checkListening(self):
        pass


class Testbed:
    """The testbed. `fanouts` (one per level) overrides `depth` and `fanout`. `host_delay_ms` and
    `switch_delay_ms` are the one-way delays of host links and of switch-to-switch links: netem on
    the links where the kernel has it, else the project's NFQUEUE delay element in every host,
    which delays each packet by its path's sum (`delay_mode` says which: "none", "netem" or
    "nfqueue"). `controller` is None for the project's learning switch (started here), or
    (ip, port) of an OpenFlow controller that is already running. `real_interfaces` lists
    (interface, node name, address/prefix or None) to move into a host (which then routes
    between its two networks) or onto a switch. `controller_app` is the os-ken application
    started when `controller` is None (the learning switch by default; M2M_CONTROLLER_APP for
    MQTT2MULTICAST), with `controller_args` (its own options, and `--observe-links`) before it."""

    def __init__(self, artifacts, depth=2, fanout=2, proxy_binary=DEFAULT_PROXY, verbose=False,
                 fanouts=None, host_delay_ms=0.0, switch_delay_ms=0.0, controller=None,
                 delay_binary=DEFAULT_DELAY, real_interfaces=(), controller_app=CONTROLLER_APP,
                 controller_args=()):
        self.artifacts = artifacts
        self.fanouts = list(fanouts) if fanouts else [fanout] * depth
        self.depth = len(self.fanouts)
        self.fanout = self.fanouts[0]
        self.proxy_binary = proxy_binary
        self.host_delay_ms = float(host_delay_ms)
        self.switch_delay_ms = float(switch_delay_ms)
        self.delay_binary = delay_binary
        self.delay_mode = "none"
        self.remote_controller = controller
        self.real_interfaces = list(real_interfaces)
        self.controller_app = controller_app
        self.controller_args = list(controller_args)
        self.net = None
        self.controller = None
        self.proxies = []
        self.captures = []
        self.processes = []
        self.delays = []
        setLogLevel("info" if verbose else "warning")

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self):
        if os.geteuid() != 0:
            raise PermissionError("the testbed needs root")
        os.makedirs(self.artifacts, exist_ok=True)
        ensure_ovs()
        if self.host_delay_ms or self.switch_delay_ms:
            self.delay_mode = "netem" if delay.netem_available() else "nfqueue"
        topo = TreeTopo(fanouts=self.fanouts, host_delay_ms=self.host_delay_ms,
                        switch_delay_ms=self.switch_delay_ms,
                        link_delays=self.delay_mode == "netem")
        existing = set(subprocess.run(["ovs-vsctl", "list-br"], capture_output=True,
                                      text=True).stdout.split())
        for iface, node, _ in self.real_interfaces:
            if not os.path.exists("/sys/class/net/%s" % iface):
                raise RuntimeError("interface %s does not exist (ip link show)" % iface)
            if node not in topo.hosts() and node not in topo.switches():
                raise RuntimeError("%s is not a node of this topology (hosts h1..h%d, switches "
                                   "s1..s%d)" % (node, len(topo.hosts()), len(topo.switches())))
        clash = sorted(existing & set(topo.switches()))
        if clash:
            raise RuntimeError("Open vSwitch bridges %s already exist; not touching them (remove "
                               "them with ovs-vsctl del-br if they are stale)" % ", ".join(clash))
        if self.remote_controller:
            controller_ip, port = self.remote_controller
        else:
            controller_ip, port = "127.0.0.1", free_tcp_port()
            self._controller_log = open(os.path.join(self.artifacts, "controller.log"), "wb")
            self.controller = subprocess.Popen(
                ["/usr/bin/osken-manager", "--ofp-listen-host", "127.0.0.1",
                 "--ofp-tcp-listen-port", str(port)] + self.controller_args
                + [self.controller_app],
                stdout=self._controller_log, stderr=subprocess.STDOUT)

        def listening():
            with socket.socket() as s:
                return s.connect_ex((controller_ip, port)) == 0

        # A controller the user started is already listening, or will not be: a short wait.
        if not wait_for(listening, 5 if self.remote_controller else 20):
            self.stop()
            if self.remote_controller:
                raise RuntimeError("no OpenFlow controller listens on %s:%d: start it first"
                                   % (controller_ip, port))
            raise RuntimeError("os-ken controller did not start (see controller.log)")
        try:
            # Inside the try: a failure while building leaves links and the controller behind
            # otherwise, and the next testbed cannot create its interfaces.
            self.net = Mininet(topo=topo,
                               switch=partial(OVSSwitch, datapath="user", protocols="OpenFlow13"),
                               link=partial(TCLink, txo=False, rxo=False),
                               controller=None, autoSetMacs=True, waitConnected=False,
                               build=False)
            self.net.addController(QuietRemoteController("c0", ip=controller_ip, port=port))
            self.net.build()
            for iface, node, _ in self.real_interfaces:
                Intf(iface, node=self.net.get(node))
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
            for iface, node, address in self.real_interfaces:
                n = self.net.get(node)
                if n in self.net.hosts:
                    # A gateway between the testbed and the real network behind the interface.
                    n.cmd("ip link set %s up" % iface)
                    if address:
                        n.cmd("ip addr add %s dev %s" % (address, iface))
                    n.cmd("sysctl -qw net.ipv4.ip_forward=1")
            if self.delay_mode == "nfqueue":
                self._start_delay_elements()
        except BaseException:
            self.stop()
            raise
        return self

    # The MQTT server port (mqtt_proxy's -t, Mosquitto's listener) as the delay elements see it.
    MQTT_PORT = 1883

    def _start_delay_elements(self):
        """Two elements per host, so that each packet is delayed once, by the sum of the link
        delays on its path (the one-way delay netem would give on every link), however it is
        sent and received (after the ping above, so the switches learnt the hosts undelayed):

        - what a client sends to an MQTT server (TCP to port 1883) at the client's egress: the
          server may be a proxy, which captures with libpcap, before any netfilter hook of its
          host, so an ingress element there would never hold it;
        - everything else at the receiver's ingress: a proxy sends its TCP segments through
          AF_PACKET, which no egress hook sees, and ingress keeps TCP's throughput, where an
          egress element throttles a flow (TCP Small Queues; docs/testbed-delay.md).

        UDP between proxies, pings and kernel TCP in both directions are delayed once as well."""
        if not os.access(self.delay_binary, os.X_OK):
            raise RuntimeError("link delays need netem, which this kernel lacks, or the NFQUEUE "
                               "delay element %s, which is not built" % self.delay_binary)
        table = delay.tree_path_delays(self.net, self.host_delay_ms, self.switch_delay_ms)
        to_server = ["-p", "tcp", "--dport", str(self.MQTT_PORT)]
        rest = [["!", "-p", "tcp"], ["-p", "tcp", "!", "--dport", str(self.MQTT_PORT)]]
        for host in self.net.hosts:
            for queue, direction, matches in ((0, "egress", [to_server]),
                                              (1, "ingress", rest)):
                element = delay.DelayElement(
                    host, "%s-eth0" % host.name, table[host.name], 2 * self.host_delay_ms, queue,
                    self.delay_binary,
                    os.path.join(self.artifacts, "delay-%s-%s.log" % (host.name, direction)),
                    direction=direction, matches=matches)
                self.delays.append(element)
                element.start()

    def describe_delays(self):
        return delay.describe(self.delay_mode, self.host_delay_ms, self.switch_delay_ms)

    def stop(self):
        for d in self.delays:
            d.stop()
        self.delays = []
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

    def start_proxy(self, host_name, peers=(), extra=(), auth=True, ready_timeout=15, port=1883,
                    log_suffix=""):
        """A proxy serving MQTT on TCP `port` and peering on UDP `port`; its log is
        proxy-HOST[-PORT][SUFFIX].log in the artifacts."""
        args = ["-t", str(port), "-U", str(port)]
        if auth:
            args += ["-u", USER, "-p", PASSWORD]
        for peer in peers:
            args += ["-F", peer]
        args += list(extra)
        log_path = os.path.join(self.artifacts, "proxy-%s%s%s.log"
                                % (host_name, "" if port == 1883 else "-%d" % port, log_suffix))
        proxy = Proxy(self.host(host_name), self.proxy_binary, args, log_path, peers=peers)
        self.proxies.append(proxy)
        proxy.wait_ready(ready_timeout)
        return proxy

    def stop_proxy(self, proxy):
        """Stops one proxy (SIGTERM, by PID) and forgets it; its exit status."""
        rc = proxy.stop()
        if proxy in self.proxies:
            self.proxies.remove(proxy)
        return rc

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


class ProxyChecks:
    """Checks of a test that starts its own proxies on `self.tb` (a unittest.TestCase mixin)."""

    def stop_proxy(self, proxy):
        return self.tb.stop_proxy(proxy)

    def stop_and_count(self, proxy):
        """Stops the proxy, which must exit 0; the counters it logged at exit."""
        self.assertEqual(self.stop_proxy(proxy), 0, proxy.log()[-2000:])
        counters = proxy.final_counters()
        self.assertTrue(counters, proxy.log()[-2000:])
        return counters

    def no_errors(self, proxy, allowed=()):
        """No line at warn or error level in its log, but those containing one of `allowed`."""
        bad = [line for line in proxy.log().splitlines()
               if re.match(r"^\S+ (WARN |ERROR) ", line)
               and not any(a in line for a in allowed)]
        self.assertEqual(bad, [], "warnings or errors in %s" % proxy.log_path)
