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
import socket
import subprocess
from functools import partial

from mininet.link import TCLink
from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import OVSSwitch, RemoteController
from mininet.topo import Topo

from procs import Capture, Proxy, wait_for

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
        try:
            # Inside the try: a failure while building leaves links and the controller behind
            # otherwise, and the next testbed cannot create its interfaces.
            self.net = Mininet(topo=topo,
                               switch=partial(OVSSwitch, datapath="user", protocols="OpenFlow13"),
                               link=partial(TCLink, txo=False, rxo=False),
                               controller=None, autoSetMacs=True, waitConnected=False,
                               build=False)
            self.net.addController(QuietRemoteController("c0", ip="127.0.0.1", port=port))
            self.net.build()
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
