#!/usr/bin/python3
"""Mininet tests of the MQTT2MULTICAST controller alone (mininet/controller/mqtt2multicast.py).

The REQUESTs are made by hand: a UDP socket in a host, bound to port 11882, sending to
192.168.1.100:11883 (the acceptance tests of mqtt2multicast.md section 6.1). The switches' groups
and flows are read with `ovs-ofctl -O OpenFlow13`; switch ports come from the Mininet links and
`ovs-ofctl show`, never from assumptions about the numbering.

Two testbeds, one after the other:
- SharedShortestPath: the reference tree (s1 over s2 with h1, h2 and s3 with h3, h4), the app's
  defaults (shortest-path L2, one tree per topic), the options given as flags (--user-flags):
  T1-T9, T16 and T17.
- PerTransmitterLearning: a tree of depth 3 (s1; s2, s3; s4-s7 with two hosts each), learning-switch
  L2, one tree per (topic, transmitter) and a 4 s idle timeout, the options given in a
  configuration file: a receiver under a new branch, T14's controller half, T16 and T17 in
  learning-switch mode.
The proxy (T16) is the unicast -F peering, which needs no MQTT2MULTICAST.

Exit status 77 (ctest: skipped) when not root or when Mininet / Open vSwitch are missing.
"""

import argparse
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import unittest

import procs
from procs import Capture, Lines

try:
    import testbed
except ImportError:  # Mininet imports only in Debian's /usr/bin/python3: main() skips
    testbed = None

HERE = os.path.dirname(os.path.abspath(__file__))
ARGS = None
VIP = "192.168.1.100"
VMAC = "02:00:00:00:01:00"
SERVER_PORT, CLIENT_PORT, DATA_PORT = 11883, 11882, 1883

# Runs in a host: sends each REQUEST (hex) from UDP port 11882 to the server and prints, per
# REQUEST, the reply as "hex source-ip source-port", or "none" after the timeout.
REQUESTER = r"""
import socket, sys
dst, timeout = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", %d))
s.settimeout(timeout)
for h in sys.argv[3:]:
    s.sendto(bytes.fromhex(h), (dst, %d))
    try:
        data, src = s.recvfrom(2048)
        print(data.hex(), src[0], src[1], flush=True)
    except socket.timeout:
        print("none", flush=True)
""" % (CLIENT_PORT, SERVER_PORT)

# Runs in a host: sends one UDP datagram (hex payload) to a multicast group, TTL 1, out of the
# host's own address (the hosts have no default route).
MULTICASTER = r"""
import socket, sys
group, src, payload = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, %d))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(src))
s.sendto(payload, (group, %d))
""" % (DATA_PORT, DATA_PORT)


def build_request(tid, flags, topic):
    topic = topic.encode() if isinstance(topic, str) else topic
    return struct.pack(">BIBH", 1, tid, flags, len(topic)) + topic


def reply_bytes(tid, address):
    return struct.pack(">BIB", 2, tid, 0) + socket.inet_aton(address)


def pcap_frames(path):
    """The frames of a pcap (Ethernet, microsecond or nanosecond, either byte order)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    if len(data) < 24:
        return []
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    out, off = [], 24
    while off + 16 <= len(data):
        caplen = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
        if off + 16 + caplen > len(data):
            break
        out.append(data[off + 16:off + 16 + caplen])
        off += 16 + caplen
    return out


def udp_of(frame):
    """(eth dst, eth src, ip header, udp header + payload) of an untagged IPv4/UDP frame, or
    None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return None
    ihl = (frame[14] & 0x0F) * 4
    total = struct.unpack(">H", frame[16:18])[0]
    ip = frame[14:14 + ihl]
    return frame[0:6], frame[6:12], ip, frame[14 + ihl:14 + total]


def udp_checksum_ok(ip, segment):
    pseudo = ip[12:20] + struct.pack(">BBH", 0, 17, len(segment))
    data = pseudo + segment
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(">%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def mac_bytes(mac):
    return bytes(int(x, 16) for x in mac.split(":"))


def groups(switch):
    """{group id: set of output ports} on a switch."""
    out = {}
    for line in procs.ofctl("dump-groups", switch).splitlines():
        m = re.search(r"group_id=(\d+)", line)
        if m:
            out[int(m.group(1))] = {int(p) for p in re.findall(r"output:(\d+)", line)}
    return out


def flows(switch, needle=""):
    return [line.strip() for line in procs.ofctl("dump-flows", switch).splitlines()
            if "priority=" in line and needle in line]


class Base(unittest.TestCase):
    """What both testbeds share; subclasses set the testbed up."""

    FANOUTS = [2, 2]
    tb = None

    @classmethod
    def start(cls, controller_args, name):
        cls.artifacts = os.path.join(ARGS.artifacts, name)
        os.makedirs(cls.artifacts, exist_ok=True)
        cls.tb = testbed.Testbed(cls.artifacts, fanouts=cls.FANOUTS, proxy_binary=ARGS.proxy,
                                 controller_app=testbed.M2M_CONTROLLER_APP,
                                 controller_args=["--observe-links"] + controller_args)
        cls.tb.start()
        try:
            switches = len(cls.tb.net.switches)
            # Every switch-to-switch link in both directions: the trees and paths need them.
            ok = procs.wait_for(lambda: cls.links_known() >= 2 * (switches - 1), 30)
            if not ok:
                raise RuntimeError("the controller found %d of %d links"
                                   % (cls.links_known(), 2 * (switches - 1)))
            cls.ofport = {}
            for s in cls.tb.net.switches:
                for line in procs.ofctl("show", s.name).splitlines():
                    m = re.match(r"\s*(\d+)\(([^)]+)\):", line)
                    if m:
                        cls.ofport[m.group(2)] = int(m.group(1))
        except BaseException:
            cls.tb.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.tb is not None:
            cls.tb.stop()

    @classmethod
    def controller_log(cls):
        with open(os.path.join(cls.artifacts, "controller.log"), errors="replace") as f:
            return f.read()

    @classmethod
    def links_known(cls):
        return len(re.findall(r"^link \S+ -> \S+$", cls.controller_log(), re.M))

    # -- topology helpers ------------------------------------------------------------------------

    def port(self, switch, neighbour):
        """The OpenFlow port of `switch` that leads to `neighbour` (a host or a switch), from the
        Mininet link between them and the switch's `ovs-ofctl show`."""
        for link in self.tb.net.links:
            ends = {link.intf1.node.name: link.intf1, link.intf2.node.name: link.intf2}
            if set(ends) == {switch, neighbour}:
                return self.ofport[ends[switch].name]
        raise KeyError((switch, neighbour))

    def switch_of(self, host):
        link = self.tb.host(host).intf().link
        other = link.intf2 if link.intf1.node.name == host else link.intf1
        return other.node.name

    def ip(self, host):
        return testbed.host_ip(int(host[1:]))

    def mac(self, host):
        return testbed.host_mac(int(host[1:]))

    # -- REQUESTs and datagrams ------------------------------------------------------------------

    def requests(self, host, payloads, dst=VIP, timeout=2.0):
        """Sends each payload from `host` and returns, per payload, (reply bytes, source) or
        None."""
        rc, out, err = self.tb.run(host, ["/usr/bin/python3", "-c", REQUESTER, dst, str(timeout)]
                                   + [p.hex() for p in payloads],
                                   timeout=30 + timeout * len(payloads))
        self.assertEqual(rc, 0, err)
        result = []
        for line in out.splitlines():
            if line == "none":
                result.append(None)
            else:
                h, addr, port = line.split()
                result.append((bytes.fromhex(h), (addr, int(port))))
        self.assertEqual(len(result), len(payloads), out + err)
        return result

    def request(self, host, flags, topic, tid=0x01020304, timeout=2.0):
        return self.requests(host, [build_request(tid, flags, topic)], timeout=timeout)[0]

    def address_of(self, host, flags, topic, tid=0x0A0B0C0D):
        got = self.request(host, flags, topic, tid)
        self.assertIsNotNone(got, "no REPLY to %s for %s" % (host, topic))
        data, src = got
        self.assertEqual(src, (VIP, SERVER_PORT))
        self.assertEqual(data[:6], struct.pack(">BIB", 2, tid, 0))
        return socket.inet_ntoa(data[6:10])

    def multicast(self, host, group, payload=b"\x30\x03\x00\x01xy"):
        rc, _, err = self.tb.run(host, ["/usr/bin/python3", "-c", MULTICASTER, group,
                                        self.ip(host), payload.hex()])
        self.assertEqual(rc, 0, err)

    def datagrams_to(self, cap, group):
        return [f for f in pcap_frames(cap.path)
                if udp_of(f) and socket.inet_ntoa(udp_of(f)[2][16:20]) == group]

    def assert_reaches(self, sender, group, receivers, others):
        """A datagram from `sender` to `group` reaches each of `receivers` once and none of
        `others`."""
        caps = {h: Capture(self.tb.host(h), "%s-eth0" % h,
                           os.path.join(self.artifacts, "mc-%s-%s-%f.pcap"
                                        % (h, group, time.time())), bpf="udp port %d" % DATA_PORT)
                for h in list(receivers) + list(others)}
        try:
            self.multicast(sender, group)
            for h in receivers:
                self.assertTrue(procs.wait_for(lambda h=h: self.datagrams_to(caps[h], group), 5),
                                "the datagram to %s never reached %s" % (group, h))
            time.sleep(1)  # anything else on its way arrives within this
            for h in receivers:
                self.assertEqual(len(self.datagrams_to(caps[h], group)), 1, h)
            for h in others:
                self.assertEqual(self.datagrams_to(caps[h], group), [], h)
        finally:
            for c in caps.values():
                c.stop()

    def assert_no_errors(self):
        log = self.controller_log()
        self.assertNotIn("OFPT_ERROR", log)
        self.assertNotIn("Traceback", log)  # a handler that raised
        self.assertIsNone(self.tb.controller.poll(), "the controller exited")

    def expected_tree(self, sender, receivers):
        """{switch: ports} of the shortest-path tree from sender's switch to the receivers."""
        tree = {}
        net = self.tb.net
        parent = {}
        for link in net.links:
            a, b = link.intf1.node.name, link.intf2.node.name
            if a.startswith("s") and b.startswith("s"):
                up, down = sorted((a, b), key=lambda n: int(n[1:]))
                parent[down] = up

        def up_path(s):
            p = [s]
            while p[-1] in parent:
                p.append(parent[p[-1]])
            return p

        src = self.switch_of(sender)
        for r in receivers:
            dst = self.switch_of(r)
            a, b = up_path(src), up_path(dst)
            top = next(s for s in a if s in b)
            hops = a[:a.index(top) + 1] + list(reversed(b[:b.index(top)]))
            for here, nxt in zip(hops, hops[1:] + [r]):
                tree.setdefault(here, set()).add(self.port(here, nxt))
        return tree

    def assert_groups(self, group, tree):
        for s in self.tb.net.switches:
            got = groups(s.name).get(group)
            self.assertEqual(got, tree.get(s.name), "group %d on %s" % (group, s.name))

    # -- shared checks -----------------------------------------------------------------------------

    def check_pingall_and_peering(self, mode):
        self.assertEqual(self.tb.net.pingAll(timeout=2), 0)
        a, b, sub_host, pub_host = self.PEERING
        proxy_a = self.tb.start_proxy(a, peers=[self.ip(b)], log_suffix="-" + mode)
        proxy_b = self.tb.start_proxy(b, peers=[self.ip(a)], log_suffix="-" + mode)
        auth = ["-u", testbed.USER, "-P", testbed.PASSWORD]
        requests_before = self.controller_log().count("REQUEST flags")
        try:
            p = self.tb.popen(sub_host, ["mosquitto_sub", "-h", self.ip(a), "-t", "m2m/udp",
                                         "-C", "1", "-W", "30"] + auth)
            lines = Lines(p.stdout)
            self.assertTrue(proxy_b.wait_peer_interest("m2m/udp", True, 1, 15),
                            "%s never saw %s's SUBSCRIBE" % (b, a))
            rc, out, err = self.tb.run(pub_host, ["mosquitto_pub", "-h", self.ip(b), "-t",
                                                  "m2m/udp", "-m", "message1"] + auth)
            self.assertEqual(rc, 0, out + err)
            self.assertEqual(lines.next(20), "message1")
            self.assertEqual(p.wait(10), 0)
        finally:
            proxy_a.stop()
            proxy_b.stop()
        # The peering used no MQTT2MULTICAST.
        self.assertEqual(self.controller_log().count("REQUEST flags"), requests_before)
        # The first packet of a new flow is not lost: with the unicast flows gone, a single ping's
        # one echo request must still get its reply.
        for s in self.tb.net.switches:
            procs.ofctl("del-flows", s.name, "cookie=0x8000000000000000/0x8000000000000000")
        rc, out, _ = self.tb.run(self.PEERING[2], ["ping", "-c", "1", "-W", "3",
                                                   self.ip(self.PEERING[3])])
        self.assertEqual(rc, 0, out)


class SharedShortestPath(Base):
    FANOUTS = [2, 2]
    PEERING = ("h1", "h4", "h2", "h3")

    @classmethod
    def setUpClass(cls):
        # The options as flags; these are the defaults, spelt out.
        cls.start(["--user-flags", testbed.M2M_CONTROLLER_APP, "--m2m-mode", "shortest-path",
                   "--m2m-virtual-mac", VMAC, "--m2m-idle-timeout", "3600"], "shared")

    def test_00_every_host_is_learnt_by_the_first_pingall(self):
        """With flows on the destination alone, a host that only answered (its replies rode the
        flows toward the asker) was never seen in a packet-in and stayed unknown."""
        log = self.controller_log()
        for h in self.tb.net.hosts:
            self.assertIn("host %s %s" % (self.mac(h.name), self.ip(h.name)), log)

    def test_01_base_rules(self):
        for s in self.tb.net.switches:
            lines = flows(s.name)
            self.assertTrue(any(re.search(r"priority=0 actions=CONTROLLER:65535", l)
                                for l in lines), (s.name, lines))
            for field in ("tp_src", "tp_dst"):
                self.assertTrue(any(re.search(r"priority=100,udp,%s=11883 "
                                              r"actions=CONTROLLER:65535" % field, l)
                                    for l in lines), (s.name, field, lines))
            self.assertRegex(procs.ofctl("dump-group-features", s.name), r"\ball\b")

    def test_02_request_reply_bytes(self):
        s2 = self.switch_of("h1")
        others = [i.name for i in self.tb.net.get(s2).intfList()
                  if i.name != "lo" and i.link and self.tb.host("h1") not in
                  (i.link.intf1.node, i.link.intf2.node)]
        self.assertEqual(len(others), 2)  # to s1 and to h2
        bpf = "udp port %d" % SERVER_PORT
        cap_h1 = Capture(self.tb.host("h1"), "h1-eth0", os.path.join(self.artifacts, "t2-h1.pcap"),
                         bpf=bpf)
        caps = [Capture(self.tb.net.get(s2), name, os.path.join(self.artifacts,
                                                                  "t2-%s.pcap" % name), bpf=bpf)
                for name in others]
        try:
            got = self.requests("h1", [bytes.fromhex("01 12 34 56 78 01 00 06 74 6f 70 69 63 31")])
            self.assertEqual(got, [(bytes.fromhex("02 12 34 56 78 00 e1 00 00 00"),
                                    (VIP, SERVER_PORT))])
            self.assertTrue(procs.wait_for(lambda: len(pcap_frames(cap_h1.path)) >= 2, 5))
            time.sleep(0.5)
        finally:
            for c in [cap_h1] + caps:
                c.stop()
        frames = [udp_of(f) for f in pcap_frames(cap_h1.path)]
        replies = [f for f in frames if f and f[3][:2] == struct.pack(">H", SERVER_PORT)]
        self.assertEqual(len(replies), 1)
        eth_dst, eth_src, ip, seg = replies[0]
        self.assertEqual(eth_dst, mac_bytes(self.mac("h1")))
        self.assertEqual(eth_src, mac_bytes(VMAC))
        self.assertEqual(socket.inet_ntoa(ip[12:16]), VIP)
        self.assertEqual(socket.inet_ntoa(ip[16:20]), self.ip("h1"))
        self.assertEqual(ip[8], 255)  # TTL
        self.assertEqual(struct.unpack(">HHH", seg[:6]), (SERVER_PORT, CLIENT_PORT, 18))
        self.assertNotEqual(seg[6:8], b"\0\0")
        self.assertTrue(udp_checksum_ok(ip, seg), seg.hex())
        self.assertEqual(seg[8:], bytes.fromhex("02 12 34 56 78 00 e1 00 00 00"))
        for c in caps:  # the first switch punted the REQUEST: it went no further
            self.assertEqual(pcap_frames(c.path), [], c.path)

    def test_03_allocation_order(self):
        self.assertEqual(self.address_of("h3", 1, "topic2"), "225.0.0.1")
        self.assertEqual(self.address_of("h4", 0, "topic1"), "225.0.0.0")
        # 255 more topics: the 257th (index 256) is 225.0.1.0.
        payloads = [build_request(1000 + i, 1, "bulk/%d" % i) for i in range(255)]
        got = self.requests("h3", payloads)
        self.assertNotIn(None, got)
        addresses = [socket.inet_ntoa(d[6:10]) for d, _ in got]
        self.assertEqual(addresses[253], "225.0.0.255")
        self.assertEqual(addresses[254], "225.0.1.0")
        self.assertEqual(self.address_of("h2", 1, "topic2"), "225.0.0.1")

    def test_04_flags_2_not_answered_and_still_allocates(self):
        self.assertIsNone(self.request("h2", 2, "ghost", timeout=1.5))
        self.assertEqual(self.address_of("h2", 1, "after-ghost"), "225.0.1.2")
        self.assertIsNone(self.request("h2", 2, "after-ghost", timeout=1.5))

    def test_05_robustness(self):
        good = build_request(0x55, 1, "robust")
        bad = [good[:5], good[:-2], b"\x03" + good[1:]]
        got = self.requests("h2", bad + [good], timeout=1.5)
        self.assertEqual(got[:3], [None, None, None])
        self.assertIsNotNone(got[3])
        self.assertEqual(got[3][0][:5], b"\x02\x00\x00\x00\x55")
        self.assertEqual(self.controller_log().count("malformed REQUEST"), 3)
        # A broadcast-addressed REQUEST (what a proxy sends when the ARP for the server went
        # unanswered, as with the original controller) is answered too.
        self.tb.run("h2", ["ip", "neigh", "replace", VIP, "lladdr", "ff:ff:ff:ff:ff:ff", "dev",
                           "h2-eth0", "nud", "permanent"])
        try:
            self.assertEqual(self.address_of("h2", 1, "robust"),
                             socket.inet_ntoa(got[3][0][6:10]))
        finally:
            self.tb.run("h2", ["ip", "neigh", "del", VIP, "dev", "h2-eth0"])
        # A REQUEST to another address is not answered (h4 has no server).
        got = self.requests("h2", [good], dst=self.ip("h4"), timeout=1.5)
        self.assertEqual(got, [None])
        self.assert_no_errors()

    def test_06_arp(self):
        if shutil.which("arping") is None:
            self.skipTest("arping is not installed (iputils-arping)")
        rc, out, err = self.tb.run("h1", ["arping", "-c", "1", "-w", "3", "-I", "h1-eth0", VIP])
        self.assertEqual(rc, 0, out + err)
        self.assertIn(VMAC, out.lower())

    def test_07_tree_install(self):
        # topic1: h1 asked as a receiver (test 2), h4 as a transmitter (test 3).
        tree = self.expected_tree("h4", ["h1"])
        self.assertEqual(sorted(tree), ["s1", "s2", "s3"])
        self.assertTrue(procs.wait_for(lambda: groups("s2").get(1) == tree["s2"], 5))
        self.assert_groups(1, tree)
        for s in self.tb.net.switches:
            f = flows(s.name, "nw_dst=225.0.0.0")
            self.assertEqual(len(f), 1, (s.name, f))
            self.assertIn("idle_timeout=3600", f[0])
            self.assertIn("send_flow_rem", f[0])
            self.assertRegex(f[0], r"priority=100,ip,nw_dst=225\.0\.0\.0 actions=group:1$")
        # The other order: transmitter first.
        self.assertEqual(self.address_of("h4", 0, "order"), "225.0.1.4")
        self.assertEqual(self.address_of("h1", 1, "order"), "225.0.1.4")
        self.assert_groups(261, tree)
        self.assert_no_errors()

    def test_08_receiver_join(self):
        self.address_of("h2", 1, "topic1")
        tree = self.expected_tree("h4", ["h1", "h2"])
        self.assertEqual(tree["s2"], {self.port("s2", "h1"), self.port("s2", "h2")})
        self.assert_groups(1, tree)
        self.assert_reaches("h4", "225.0.0.0", ["h1", "h2"], ["h3"])
        self.assert_no_errors()

    def test_09_receiver_leave(self):
        self.assertIsNone(self.request("h2", 2, "topic1", timeout=1))
        self.assert_groups(1, self.expected_tree("h4", ["h1"]))
        self.assertIsNone(self.request("h1", 2, "topic1", timeout=1))
        for s in self.tb.net.switches:
            self.assertNotIn(1, groups(s.name))
            self.assertEqual(flows(s.name, "nw_dst=225.0.0.0"), [])
        self.assert_reaches("h4", "225.0.0.0", [], ["h1", "h2", "h3"])
        self.assert_no_errors()

    def test_16_udp_peering_under_the_app(self):
        self.check_pingall_and_peering("shortest-path")

    def test_99_a_group_the_switch_refuses_is_repaired(self):
        """Last in the class: it makes the switch send an OFPT_ERROR. A group id the app is about
        to ADD already exists on s2 (with a wrong bucket), so the ADD fails (GROUP_EXISTS); the
        app deletes it there and installs it anew, and the tree carries the datagram."""
        address = self.address_of("h4", 0, "t99")
        group = (struct.unpack(">I", socket.inet_aton(address))[0]
                 - struct.unpack(">I", socket.inet_aton("225.0.0.0"))[0] + 1)
        subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "add-group", "s2",
                        "group_id=%d,type=all,bucket=output:%d" % (group, self.port("s2", "h2"))],
                       check=True)
        self.address_of("h1", 1, "t99")
        tree = self.expected_tree("h4", ["h1"])
        self.assertTrue(procs.wait_for(lambda: groups("s2").get(group) == tree["s2"], 5),
                        (groups("s2"), self.controller_log()[-3000:]))
        self.assertIn("group %d on switch 2: deleted, installed again" % group,
                      self.controller_log())
        self.assert_reaches("h4", address, ["h1"], ["h2", "h3"])

    def test_17_pingall_and_shortest_path_flows(self):
        self.assertEqual(self.tb.net.pingAll(timeout=2), 0)
        for here, nxt in (("s2", "s1"), ("s1", "s3"), ("s3", "h4")):
            f = flows(here, "dl_dst=%s" % self.mac("h4"))
            self.assertTrue(any("priority=1," in l and l.endswith("actions=output:%d"
                                                                   % self.port(here, nxt))
                                for l in f), (here, f))
        self.assert_no_errors()


class PerTransmitterLearning(Base):
    FANOUTS = [2, 2, 2]  # s1; s2, s3; s4 (h1, h2), s5 (h3, h4), s6 (h5, h6), s7 (h7, h8)
    PEERING = ("h1", "h4", "h2", "h3")
    IDLE = 4

    @classmethod
    def setUpClass(cls):
        os.makedirs(os.path.join(ARGS.artifacts, "pertx"), exist_ok=True)
        conf = os.path.join(ARGS.artifacts, "pertx", "m2m.conf")
        with open(conf, "w") as f:
            f.write("[m2m]\nmode = learning\nper_transmitter = true\nidle_timeout = %d\n"
                    "virtual_mac = %s\n" % (cls.IDLE, VMAC))
        cls.start(["--config-file", conf], "pertx")

    def test_01_options_from_the_file(self):
        self.assertIn("L2 learning, per-transmitter trees, topic flows idle %d s" % self.IDLE,
                      self.controller_log())

    def test_02_receiver_under_a_new_branch(self):
        # Transmitter h1 (s4), receiver h3 (s5): the tree is s4 -> s2 -> s5.
        self.assertEqual(self.address_of("h3", 1, "branch"), "225.0.0.0")
        self.assertEqual(self.address_of("h1", 0, "branch"), "225.0.0.0")
        group = 0x101  # topic 0, its first transmitter
        tree = self.tree("h1", ["h3"])
        self.assertEqual(sorted(tree), ["s2", "s4", "s5"])
        self.assertTrue(procs.wait_for(lambda: groups("s5").get(group) == tree["s5"], 5))
        self.assert_groups(group, tree)
        for s in tree:
            f = flows(s, "nw_dst=225.0.0.0")
            self.assertEqual(len(f), 1, f)
            self.assertIn("nw_src=%s" % self.ip("h1"), f[0])
        before = {s.name: groups(s.name) for s in self.tb.net.switches}
        # h5 under s6: s1, s3 and s6 join, s2 (the branch point) gets a bucket toward s1, and
        # s4 and s5 are untouched.
        self.address_of("h5", 1, "branch")
        bigger = self.tree("h1", ["h3", "h5"])
        self.assertEqual(sorted(bigger), ["s1", "s2", "s3", "s4", "s5", "s6"])
        self.assert_groups(group, bigger)
        for s in ("s4", "s5", "s7"):
            self.assertEqual(groups(s), before[s], s)
        self.assertEqual(bigger["s2"], tree["s2"] | {self.port("s2", "s1")})
        self.assert_reaches("h1", "225.0.0.0", ["h3", "h5"], ["h2", "h4", "h6", "h7"])
        # A second transmitter gets its own group, matching its own source.
        self.assertEqual(self.address_of("h7", 0, "branch"), "225.0.0.0")
        self.assert_groups(0x102, self.tree("h7", ["h3", "h5"]))
        self.assert_no_errors()

    def test_14_expired_flow_is_reinstalled_by_a_punted_datagram(self):
        self.assertEqual(self.address_of("h8", 1, "expiry"), "225.0.0.1")
        self.assertEqual(self.address_of("h6", 0, "expiry"), "225.0.0.1")
        tree = self.tree("h6", ["h8"])
        self.assertTrue(procs.wait_for(lambda: all(flows(s, "nw_dst=225.0.0.1")
                                                   for s in tree), 5))
        # Nothing uses them: the flows expire (idle timeout), the switches say so.
        gone = procs.wait_for(lambda: not any(flows(s, "nw_dst=225.0.0.1") for s in tree),
                              self.IDLE + 10)
        self.assertTrue(gone, "the topic flows never expired")
        self.assertTrue(procs.wait_for(lambda: "removed from switch" in self.controller_log()
                                       and "(idle timeout)" in self.controller_log(), 5))
        # The next datagram is punted, put back on the tree and delivered; the flows are back.
        self.assert_reaches("h6", "225.0.0.1", ["h8"], ["h5", "h7"])
        for s in tree:
            self.assertEqual(len(flows(s, "nw_dst=225.0.0.1")), 1, s)
        self.assert_no_errors()

    def test_16_udp_peering_and_pingall_in_learning_mode(self):
        self.check_pingall_and_peering("learning")
        self.assert_no_errors()

    def tree(self, sender, receivers):
        return self.expected_tree(sender, receivers)


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", default=os.path.join(os.path.dirname(HERE), "build", "mqtt_proxy"))
    ap.add_argument("--artifacts", default=os.path.join(os.path.dirname(HERE), "build",
                                                        "m2m-controller-artifacts"))
    ap.add_argument("-k", dest="pattern", default=None, help="run only tests matching this")
    ARGS = ap.parse_args()
    if testbed is not None:
        suite_cases = [SharedShortestPath, PerTransmitterLearning]
    else:
        suite_cases = []
    status = 0
    # run_suite removes the artifacts directory each time: one directory per testbed.
    root = ARGS.artifacts
    for case in suite_cases or [SharedShortestPath]:
        ARGS.artifacts = os.path.join(root, case.__name__)
        rc = procs.run_suite("m2m_controller", case, ARGS, testbed is not None)
        if rc == procs.SKIP:
            return rc
        status = status or rc
    return status


if __name__ == "__main__":
    sys.exit(main())
