"""MQTT2MULTICAST server and L2 forwarder: an os-ken application (OpenFlow 1.3).

The server has no socket: the switches punt REQUESTs (UDP to port 11883) to the controller, which
answers each with a REPLY packet-out on the port the REQUEST came in by, and builds a multicast tree
per topic out of OpenFlow group tables. The same app forwards unicast (shortest path or learning
switch). Wire format, numbering and rules are the original's (docs: mqtt2multicast.md, sections 1
and 3); the pure logic (parsing, addresses, sets, trees, diffs) is m2m_logic.py beside this file.

Run (the topology app's LLDP is needed for the trees and shortest paths):

    /usr/bin/osken-manager --observe-links mininet/controller/mqtt2multicast.py

Options. osken-manager parses its command line before it imports the apps, so an app cannot add
command-line flags by registering them when it is loaded. Two ways work with os-ken 2.5, both
through oslo.config, group [m2m]:

  1. As flags: name this file to the manager's --user-flags as well (it imports the file before
     parsing, so the options below are registered in time). --user-flags must be given as two
     words (the manager looks it up in sys.argv), e.g.
       osken-manager --observe-links --user-flags mqtt2multicast.py --m2m-mode learning \
           --m2m-idle-timeout 30 mqtt2multicast.py
  2. In a configuration file: osken-manager --observe-links --config-file m2m.conf mqtt2multicast.py
     with
       [m2m]
       mode = learning
       idle_timeout = 30

  --m2m-mode shortest-path|learning  L2 forwarding (default shortest-path, as the original)
  --m2m-per-transmitter              one group per (topic, transmitter), the flow matching
                                     ipv4_src too (for topologies with loops; default off: one
                                     group per topic, shared by the transmitters, as the original)
  --m2m-virtual-ip 192.168.1.100     the server's address (no host owns it)
  --m2m-virtual-mac 02:00:00:00:01:00
                                     the source MAC of REPLYs and ARP replies: unicast and locally
                                     administered (the original's 11:22:33:44:55:66 has the group
                                     bit set, so it is refused)
  --m2m-server-port 11883            the UDP port of REQUESTs
  --m2m-idle-timeout 3600            idle timeout of the per-topic flows (0: never)
  --m2m-first-address 225.0.0.0      the address of the first topic
  --m2m-packet-log-level debug|info  the level of the per-packet log lines (the original logged
                                     every IPv4 packet-in at info)

Behaviour in short:
- At SwitchFeatures the app's own flows and all groups are deleted (a reconnecting switch starts
  clean), then: table miss prio 0 -> CONTROLLER (NO_BUFFER); prio 100 udp_src=11883 and
  udp_dst=11883 -> CONTROLLER. So a REQUEST is punted by the first switch and goes no further.
- REQUEST (IPv4/UDP to the virtual IP and the server port; any Eth dst, broadcast included):
  flags 0/1 are answered; flags 2 removes the receiver, no REPLY. A malformed one is logged and
  dropped. A datagram to the server port for another IP is forwarded as ordinary traffic.
- ARP requests for the virtual IP are answered with the virtual MAC.
- Trees: per (switch, group) the app keeps what it installed and what is wanted, and sends group
  ADD, MODIFY or DELETE (with the prio 100 eth_type=0x0800,ipv4_dst flow, flow removed first) as
  the wanted buckets change. The topic flows ask for OFPFF_SEND_FLOW_REM, so an idle-expired flow
  is known gone; a datagram to a topic's address that is punted then (the flow expired) puts the
  tree back and is sent along it. A datagram to a known topic address with no tree is dropped;
  its sender is made a transmitter of the topic when it is not one (the original proxy never
  announces itself for a topic whose address it learnt by subscribing).
- Hosts are learnt from every ARP and IPv4 packet-in on an edge port (one that carries no
  switch-to-switch link): MAC, IP, switch, port; seen elsewhere, they move, their unicast flows are
  deleted and the trees recomputed. The topology comes from os-ken's topology events, applied as
  they come; a link or a host that changes recomputes every tree.
- Shortest-path mode: prio 1 (eth_src, eth_dst) flows on each switch along the BFS path, in both
  directions (the original matched eth_dst alone, which let a host that only answers stay
  unknown), and the triggering packet is sent out at the destination's switch (so
  the first packet of a flow is not lost). Broadcasts and unknown destinations are not flooded
  through the switches: the controller hands a copy to every edge port of every switch (one
  packet-out per switch), so loops in the topology cannot make a storm. A copy that reaches
  another switch through a link not yet discovered comes back identical; it is dropped (frames
  seen in the last 0.5 s from another place).
- Learning-switch mode: per switch MAC learning, prio 1 (in_port, eth_src, eth_dst) flows and
  OFPP_FLOOD for unknown destinations, as simple_switch_13: for tree topologies only.
"""

import collections
import ipaddress
import logging
import os
import struct
import sys
import time

from oslo_config import cfg as oslo_cfg

from os_ken import cfg
from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import (CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER,
                                       set_ev_cls)
from os_ken.lib import addrconv
from os_ken.lib.packet import arp, ether_types, ethernet, ipv4, packet, udp
from os_ken.ofproto import ofproto_v1_3
from os_ken.topology import event as topo_event

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import m2m_logic  # noqa: E402  (beside this file; os-ken loads apps by path)

GROUP = "m2m"
OPTS = [
    cfg.StrOpt("mode", default="shortest-path", choices=["shortest-path", "learning"],
               help="L2 forwarding: shortest-path or learning"),
    cfg.BoolOpt("per-transmitter", default=False,
                help="one group per (topic, transmitter), matching ipv4_src too"),
    cfg.StrOpt("virtual-ip", default="192.168.1.100", help="the server's IPv4 address"),
    cfg.StrOpt("virtual-mac", default="02:00:00:00:01:00",
               help="the server's MAC (unicast, locally administered)"),
    cfg.IntOpt("server-port", default=11883, min=1, max=65535, help="UDP port of REQUESTs"),
    cfg.IntOpt("idle-timeout", default=3600, min=0, max=65535,
               help="idle timeout of the per-topic flows in seconds (0: none)"),
    cfg.StrOpt("first-address", default="225.0.0.0", help="the first topic's address"),
    cfg.StrOpt("packet-log-level", default="debug", choices=["debug", "info"],
               help="level of the per-packet log lines"),
]


def _register_options():
    # Under --user-flags this file is imported before the command line is parsed: the options
    # become flags. Imported again as the app (or only as the app), they are config-file options.
    try:
        cfg.CONF.register_cli_opts(OPTS, group=GROUP)
    except oslo_cfg.ArgsAlreadyParsedError:
        cfg.CONF.register_opts(OPTS, group=GROUP)


_register_options()

PRIO_MISS, PRIO_L2, PRIO_M2M = 0, 1, 100
# Cookies tell our flows apart: unicast L2 flows, and per-topic flows (the low 32 bits are the
# group id, so a flow-removed names its group).
COOKIE_L2 = 1 << 63
COOKIE_TOPIC = 1 << 62
COOKIE_TOPIC_MASK = 0xFFFFFFFF00000000
# A topic address that reaches no tree at a switch (published, nobody subscribed) is dropped there
# by a flow of its own for this long, so its stream does not come to the controller datagram by
# datagram. A tree's flow for the same match replaces it.
COOKIE_DROP = 1 << 61
DROP_IDLE_SECONDS = 10
# A group whose message a switch refused is deleted there and installed anew, at most this many
# times a minute (a switch that keeps refusing, e.g. with a full group table, is left alone).
REPAIRS_PER_MINUTE = 3
XIDS_KEPT = 4096  # messages remembered for matching an OFPT_ERROR to its group
FLOOD_DEDUP_SECONDS = 0.5
ETH_BROADCAST = "ff:ff:ff:ff:ff:ff"


def parse_ipv4_udp(data):
    """(src, dst, ttl, proto, sport, dport, udp payload) of an untagged Ethernet IPv4 frame
    (sport, dport and payload None when it is no UDP datagram), or None. The UDP payload is cut
    at the lengths the headers give, so trailing Ethernet padding is not part of it."""
    if len(data) < 34 or data[12:14] != b"\x08\x00":
        return None
    ip = data[14:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[0] >> 4 != 4 or ihl < 20 or len(ip) < ihl:
        return None
    total = struct.unpack(">H", ip[2:4])[0]
    src, dst = str(ipaddress.IPv4Address(ip[12:16])), str(ipaddress.IPv4Address(ip[16:20]))
    ttl, proto = ip[8], ip[9]
    frag = struct.unpack(">H", ip[6:8])[0] & 0x1FFF
    ip = ip[:max(total, ihl)]
    if proto != 17 or frag or len(ip) < ihl + 8:
        return src, dst, ttl, proto, None, None, None
    sport, dport, length = struct.unpack(">HHH", ip[ihl:ihl + 6])
    payload = ip[ihl + 8:ihl + max(length, 8)]
    return src, dst, ttl, proto, sport, dport, payload


def is_multicast_ip(addr):
    return ipaddress.IPv4Address(addr) in m2m_logic.MULTICAST_NET


def mac_is_group(mac):
    return int(mac.split(":")[0], 16) & 1 == 1


class MQTT2Multicast(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        o = cfg.CONF[GROUP]
        self.mode = o.mode
        self.per_transmitter = o.per_transmitter
        self.vip = str(ipaddress.IPv4Address(o.virtual_ip))
        self.vmac = addrconv.mac.bin_to_text(addrconv.mac.text_to_bin(o.virtual_mac))
        if mac_is_group(self.vmac):
            raise ValueError("--m2m-virtual-mac %s is a group address: it cannot be a source"
                             % self.vmac)
        self.server_port = o.server_port
        self.idle_timeout = o.idle_timeout
        self.packet_level = logging.DEBUG if o.packet_log_level == "debug" else logging.INFO
        self.server = m2m_logic.Server(o.first_address, per_transmitter=self.per_transmitter)
        self.topo = m2m_logic.Topology()
        self.rec = m2m_logic.Reconciler()
        self.op_xids = collections.OrderedDict()  # (dpid, xid) -> group, for OFPT_ERROR
        self.repairs = {}  # (dpid, group) -> times it was repaired
        self.datapaths = {}  # dpid -> datapath
        self.mac_to_port = {}  # learning mode: dpid -> {mac: port}
        self.recent_floods = collections.OrderedDict()  # frame -> (time, dpid, in_port)
        self.logger.info("MQTT2MULTICAST server %s:%d MAC %s, L2 %s, %s trees, topic flows idle "
                         "%d s, first address %s", self.vip, self.server_port, self.vmac,
                         self.mode, "per-transmitter" if self.per_transmitter else "shared",
                         self.idle_timeout, o.first_address)

    def plog(self, fmt, *args):
        self.logger.log(self.packet_level, fmt, *args)

    # -- switches ---------------------------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def on_switch_features(self, ev):
        dp = ev.msg.datapath
        ofp, parser = dp.ofproto, dp.ofproto_parser
        # A switch that reconnects keeps what an earlier controller life installed: our flows
        # (told apart by their cookies; the topology app's LLDP flow is left alone) and groups go.
        for cookie in (COOKIE_L2, COOKIE_TOPIC, COOKIE_DROP):
            dp.send_msg(parser.OFPFlowMod(datapath=dp, command=ofp.OFPFC_DELETE, cookie=cookie,
                                          cookie_mask=cookie, table_id=ofp.OFPTT_ALL,
                                          out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
                                          match=parser.OFPMatch()))
        dp.send_msg(parser.OFPGroupMod(dp, ofp.OFPGC_DELETE, ofp.OFPGT_ALL, ofp.OFPG_ALL))
        to_controller = [parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)]
        self.add_flow(dp, PRIO_MISS, parser.OFPMatch(), to_controller)
        for field in ("udp_src", "udp_dst"):
            match = parser.OFPMatch(eth_type=ether_types.ETH_TYPE_IP, ip_proto=17,
                                    **{field: self.server_port})
            self.add_flow(dp, PRIO_M2M, match, to_controller)
        self.datapaths[dp.id] = dp
        self.rec.forget_switch(dp.id)
        self.mac_to_port.pop(dp.id, None)
        self.topo.add_switch(dp.id)
        self.logger.info("switch %016x connected", dp.id)
        self.reconcile()

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    def on_state_change(self, ev):
        dp = ev.datapath
        if dp.id is not None and self.datapaths.get(dp.id) is dp:
            self.switch_gone(dp.id)

    def switch_gone(self, dpid):
        self.datapaths.pop(dpid, None)
        self.rec.forget_switch(dpid)
        self.mac_to_port.pop(dpid, None)
        self.topo.remove_switch(dpid)
        self.logger.info("switch %016x gone", dpid)
        self.topology_changed()

    @set_ev_cls(topo_event.EventSwitchEnter)
    def on_switch_enter(self, ev):
        sw = ev.switch
        self.topo.add_switch(sw.dp.id, [p.port_no for p in sw.ports])

    @set_ev_cls(topo_event.EventSwitchLeave)
    def on_switch_leave(self, ev):
        if ev.switch.dp.id in self.datapaths:
            self.switch_gone(ev.switch.dp.id)

    @set_ev_cls(topo_event.EventPortAdd)
    def on_port_add(self, ev):
        self.topo.add_port(ev.port.dpid, ev.port.port_no)

    @set_ev_cls(topo_event.EventPortDelete)
    def on_port_delete(self, ev):
        self.topo.remove_port(ev.port.dpid, ev.port.port_no)
        self.topology_changed()

    @set_ev_cls(topo_event.EventLinkAdd)
    def on_link_add(self, ev):
        s, d = ev.link.src, ev.link.dst
        if self.topo.add_link(s.dpid, s.port_no, d.dpid, d.port_no):
            self.logger.info("link %x:%d -> %x:%d", s.dpid, s.port_no, d.dpid, d.port_no)
            self.topology_changed()

    @set_ev_cls(topo_event.EventLinkDelete)
    def on_link_delete(self, ev):
        s, d = ev.link.src, ev.link.dst
        if self.topo.remove_link(s.dpid, s.port_no, d.dpid, d.port_no):
            self.logger.info("link %x:%d -> %x:%d deleted", s.dpid, s.port_no, d.dpid, d.port_no)
            self.topology_changed()

    def topology_changed(self):
        # Paths may differ now: the unicast flows are rebuilt on demand, the trees at once.
        if self.mode == "shortest-path":
            for dp in self.datapaths.values():
                self.delete_l2_flows(dp)
        self.reconcile()

    # -- OpenFlow helpers -------------------------------------------------------------------------

    def add_flow(self, dp, priority, match, actions, idle_timeout=0, cookie=0, flags=0,
                 instructions=None):
        ofp, parser = dp.ofproto, dp.ofproto_parser
        inst = instructions or [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)]
        dp.send_msg(parser.OFPFlowMod(datapath=dp, cookie=cookie, priority=priority, match=match,
                                      instructions=inst, idle_timeout=idle_timeout, flags=flags))

    def delete_l2_flows(self, dp, mac=None, src=None):
        ofp, parser = dp.ofproto, dp.ofproto_parser
        if src:
            match = parser.OFPMatch(eth_src=src)
        else:
            match = parser.OFPMatch(eth_dst=mac) if mac else parser.OFPMatch()
        dp.send_msg(parser.OFPFlowMod(datapath=dp, command=ofp.OFPFC_DELETE, cookie=COOKIE_L2,
                                      cookie_mask=COOKIE_L2, table_id=ofp.OFPTT_ALL,
                                      out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, match=match))

    def packet_out(self, dp, ports, data, in_port=None):
        ofp, parser = dp.ofproto, dp.ofproto_parser
        actions = [parser.OFPActionOutput(p) for p in ports]
        if not actions:
            return
        dp.send_msg(parser.OFPPacketOut(datapath=dp, buffer_id=ofp.OFP_NO_BUFFER,
                                        in_port=ofp.OFPP_CONTROLLER if in_port is None else in_port,
                                        actions=actions, data=data))

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def on_error(self, ev):
        msg = ev.msg
        dp = msg.datapath
        self.logger.error("OFPT_ERROR from %016x: type=0x%02x code=0x%02x data=%s",
                          dp.id or 0, msg.type, msg.code, bytes(msg.data[:64]).hex())
        group = self.op_xids.pop((dp.id, msg.xid), None)
        if group is not None and dp.id in self.datapaths:
            self.repair(dp, group)

    def repair(self, dp, group):
        """The switch refused a message of `group`'s: what it holds is unknown. Delete the group
        (OVS deletes the flows that use it) and the topic flow, forget them, and reconcile."""
        now = time.monotonic()
        recent = [t for t in self.repairs.get((dp.id, group), []) if now - t < 60]
        if len(recent) >= REPAIRS_PER_MINUTE:
            self.logger.error("group %d on switch %x refused again: left as it is", group, dp.id)
            return
        self.repairs[(dp.id, group)] = recent + [now]
        ofp, parser = dp.ofproto, dp.ofproto_parser
        dp.send_msg(parser.OFPFlowMod(datapath=dp, command=ofp.OFPFC_DELETE,
                                      cookie=COOKIE_TOPIC | group, cookie_mask=0xFFFFFFFFFFFFFFFF,
                                      table_id=ofp.OFPTT_ALL, out_port=ofp.OFPP_ANY,
                                      out_group=ofp.OFPG_ANY, match=parser.OFPMatch()))
        dp.send_msg(parser.OFPGroupMod(dp, ofp.OFPGC_DELETE, ofp.OFPGT_ALL, group))
        self.rec.forget(dp.id, group)
        self.logger.warning("group %d on switch %x: deleted, installed again", group, dp.id)
        self.reconcile()

    def remember_xid(self, dp, msg, group):
        self.op_xids[(dp.id, msg.xid)] = group
        while len(self.op_xids) > XIDS_KEPT:
            self.op_xids.popitem(last=False)

    # -- trees ------------------------------------------------------------------------------------

    def topic_match(self, parser, op):
        fields = dict(eth_type=ether_types.ETH_TYPE_IP, ipv4_dst=op.address)
        if op.source is not None:
            fields["ipv4_src"] = op.source
        return parser.OFPMatch(**fields)

    def reconcile(self):
        """Brings every connected switch's groups and topic flows to what the trees want."""
        connected = set(self.datapaths)
        desired = {k: v for k, v in self.server.desired(self.topo).items() if k[0] in connected}
        ops = self.rec.diff(desired, scope=lambda key: key[0] in connected)
        for op in ops:
            self.send_op(op)
        return ops

    def send_op(self, op):
        dp = self.datapaths[op.dpid]
        ofp, parser = dp.ofproto, dp.ofproto_parser
        if op.kind in (m2m_logic.GROUP_ADD, m2m_logic.GROUP_MODIFY):
            buckets = [parser.OFPBucket(actions=[parser.OFPActionOutput(p)])
                       for p in sorted(op.buckets)]
            command = ofp.OFPGC_ADD if op.kind == m2m_logic.GROUP_ADD else ofp.OFPGC_MODIFY
            msg = parser.OFPGroupMod(dp, command, ofp.OFPGT_ALL, op.group, buckets)
            dp.send_msg(msg)
            self.remember_xid(dp, msg, op.group)
        elif op.kind == m2m_logic.GROUP_DELETE:
            dp.send_msg(parser.OFPGroupMod(dp, ofp.OFPGC_DELETE, ofp.OFPGT_ALL, op.group))
        elif op.kind == m2m_logic.FLOW_ADD:
            inst = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS,
                                                 [parser.OFPActionGroup(op.group)])]
            msg = parser.OFPFlowMod(datapath=dp, cookie=COOKIE_TOPIC | op.group,
                                    priority=PRIO_M2M, match=self.topic_match(parser, op),
                                    instructions=inst, idle_timeout=self.idle_timeout,
                                    flags=ofp.OFPFF_SEND_FLOW_REM)
            dp.send_msg(msg)
            self.remember_xid(dp, msg, op.group)
        elif op.kind == m2m_logic.FLOW_DELETE:
            dp.send_msg(parser.OFPFlowMod(datapath=dp, command=ofp.OFPFC_DELETE_STRICT,
                                          priority=PRIO_M2M, out_port=ofp.OFPP_ANY,
                                          out_group=ofp.OFPG_ANY,
                                          match=self.topic_match(parser, op)))
        self.logger.info("%s switch=%x group=%d buckets=%s dst=%s%s", op.kind, op.dpid, op.group,
                         sorted(op.buckets), op.address,
                         "" if op.source is None else " src=%s" % op.source)

    @set_ev_cls(ofp_event.EventOFPFlowRemoved, MAIN_DISPATCHER)
    def on_flow_removed(self, ev):
        msg = ev.msg
        if msg.cookie & COOKIE_TOPIC_MASK != COOKIE_TOPIC:
            return
        group = msg.cookie & 0xFFFFFFFF
        ofp = msg.datapath.ofproto
        # Only an expiry says the switch lost a flow we still want. A removal we asked for (a
        # DELETE, a group deleted, the wipe at SwitchFeatures) may be reported after the same
        # flow was added again, and must not mark the new one gone.
        if msg.reason in (ofp.OFPRR_IDLE_TIMEOUT, ofp.OFPRR_HARD_TIMEOUT):
            self.rec.flow_removed(msg.datapath.id, group)
        reason = {ofp.OFPRR_IDLE_TIMEOUT: "idle timeout", ofp.OFPRR_HARD_TIMEOUT: "hard timeout",
                  ofp.OFPRR_DELETE: "deleted", ofp.OFPRR_GROUP_DELETE: "group deleted"}
        self.logger.info("topic flow of group %d removed from switch %x (%s)", group,
                         msg.datapath.id, reason.get(msg.reason, msg.reason))

    # -- packet-in --------------------------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def on_packet_in(self, ev):
        msg = ev.msg
        try:
            self.handle_packet(msg.datapath, msg.match["in_port"], bytes(msg.data))
        except Exception:  # pylint: disable=broad-except
            # Whatever arrives, the controller carries on; the frame is dropped.
            self.logger.exception("packet-in from %s dropped", msg.datapath.id)

    def handle_packet(self, dp, in_port, data):
        if len(data) < 14:
            return
        eth = ethernet.ethernet.parser(data)[0]
        if eth.ethertype in (ether_types.ETH_TYPE_LLDP, ether_types.ETH_TYPE_IPV6):
            return  # LLDP is the topology app's; IPv6 plays no part here
        if eth.src == self.vmac or mac_is_group(eth.src):
            return
        fields = parse_ipv4_udp(data) if eth.ethertype == ether_types.ETH_TYPE_IP else None
        topic = None
        if fields is not None and is_multicast_ip(fields[1]):
            topic = self.server.alloc.topic_of_address(fields[1])
        # A topic datagram is punted again by the next switch while its flows are on their way:
        # that is no leaked flood.
        if (topic is None and self.mode == "shortest-path"
                and self.leaked_copy(dp.id, in_port, eth, data)):
            return
        if eth.ethertype == ether_types.ETH_TYPE_ARP:
            self.handle_arp(dp, in_port, eth, data)
            return
        if fields is None:
            self.forward(dp, in_port, eth, data)
            return
        src, dst, _, _, _, dport, _ = fields
        if src != "0.0.0.0" and not is_multicast_ip(src):
            self.learn(eth.src, src, dp.id, in_port)
        self.plog("IPv4 packet-in switch=%x port=%d %s -> %s", dp.id, in_port, src, dst)
        if dport == self.server_port and dst == self.vip:
            self.handle_request(dp, in_port, eth, fields)
        elif topic is not None:
            self.handle_topic_datagram(dp, in_port, topic, src, dst, data)
        elif eth.dst == self.vmac:
            self.plog("%s -> %s for the server, not a REQUEST: dropped", src, dst)
        else:
            self.forward(dp, in_port, eth, data)

    def leaked_copy(self, dpid, in_port, eth, data):
        """Whether this broadcast frame is a copy of one flooded in the last moments that came
        back from another place (through a link the topology has not found yet)."""
        if not (eth.dst == ETH_BROADCAST or mac_is_group(eth.dst)):
            return False
        now = time.monotonic()
        while self.recent_floods:
            frame, (t, _, _) = next(iter(self.recent_floods.items()))
            if now - t <= FLOOD_DEDUP_SECONDS:
                break
            self.recent_floods.popitem(last=False)
        seen = self.recent_floods.get(data)
        if seen is not None and seen[1:] != (dpid, in_port):
            return True
        if self.topo.is_link_port(dpid, in_port):
            return True  # a flood never crosses a link here: it came through a flow
        self.recent_floods[data] = (now, dpid, in_port)
        self.recent_floods.move_to_end(data)
        return False

    def learn(self, mac, ip, dpid, port):
        change = self.topo.learn_host(mac, ip, dpid, port)
        if change is None:
            return
        self.logger.info("host %s %s at switch %x port %d (%s)", mac, ip or "-", dpid, port, change)
        if change == "moved":
            for dp in self.datapaths.values():
                self.delete_l2_flows(dp, mac)
                self.delete_l2_flows(dp, src=mac)
        self.reconcile()

    # ARP

    def handle_arp(self, dp, in_port, eth, data):
        a = arp.arp.parser(data[14:])[0]
        spa = a.src_ip if a.src_ip != "0.0.0.0" else None
        self.learn(eth.src, spa, dp.id, in_port)
        if a.opcode == arp.ARP_REQUEST and a.dst_ip == self.vip:
            reply = packet.Packet()
            reply.add_protocol(ethernet.ethernet(dst=eth.src, src=self.vmac,
                                                 ethertype=ether_types.ETH_TYPE_ARP))
            reply.add_protocol(arp.arp(opcode=arp.ARP_REPLY, src_mac=self.vmac, src_ip=self.vip,
                                       dst_mac=a.src_mac, dst_ip=a.src_ip))
            reply.serialize()
            self.packet_out(dp, [in_port], reply.data)
            self.plog("ARP who-has %s from %s answered %s", self.vip, a.src_ip, self.vmac)
            return
        self.forward(dp, in_port, eth, data)

    # MQTT2MULTICAST

    def handle_request(self, dp, in_port, eth, fields):
        src, _, _, _, sport, _, payload = fields
        try:
            req = m2m_logic.parse_request(payload)
        except m2m_logic.Malformed as e:
            self.logger.warning("malformed REQUEST from %s:%d dropped: %s (%s)", src, sport, e,
                                payload[:32].hex())
            return
        out = self.server.handle_request(req, src)
        self.logger.info("%s tid=0x%08x", out.message, req.tid)
        # The tree's messages first: a proxy sends its held PUBLISHes as soon as the REPLY comes.
        # (OpenFlow orders messages per switch only; a datagram that still beats a switch's flow
        # is punted there and sent along the tree, handle_topic_datagram.)
        if out.topics:
            self.reconcile()
        if out.reply is not None:
            frame = packet.Packet()
            frame.add_protocol(ethernet.ethernet(dst=eth.src, src=self.vmac,
                                                 ethertype=ether_types.ETH_TYPE_IP))
            frame.add_protocol(ipv4.ipv4(src=self.vip, dst=src, ttl=255, proto=17))
            frame.add_protocol(udp.udp(src_port=self.server_port, dst_port=sport))
            frame.add_protocol(out.reply)
            frame.serialize()
            self.packet_out(dp, [in_port], frame.data)

    def handle_topic_datagram(self, dp, in_port, topic, src, dst, data):
        """A datagram to a topic's address that no flow caught: the topic flow expired, the tree
        is not there yet, or the sender is no transmitter of the topic."""
        host = self.topo.host_by_ip(src)
        if (host is not None and (host.dpid, host.port) == (dp.id, in_port)
                and src not in self.server.transmitters.get(topic, ())):
            if self.server.add_transmitter(topic, src):
                self.logger.info("%s sends to %s (topic %s): now a transmitter", src, dst,
                                 topic.decode("utf-8", "replace"))
        self.reconcile()
        n = self.server.alloc.lookup(topic)
        if self.per_transmitter:
            slot = self.server.slots.get(topic, {}).get(src)
            group = m2m_logic.per_transmitter_group_id(n, slot) if slot else None
        else:
            group = m2m_logic.shared_group_id(n)
        buckets = self.rec.buckets(dp.id, group) if group else ()
        ports = sorted(p for p in buckets if p != in_port)
        self.plog("datagram %s -> %s punted at switch %x port %d: out %s", src, dst, dp.id,
                  in_port, ports or "nowhere")
        if not buckets:
            ofp, parser = dp.ofproto, dp.ofproto_parser
            fields = dict(eth_type=ether_types.ETH_TYPE_IP, ipv4_dst=dst)
            if self.per_transmitter:
                fields["ipv4_src"] = src
            self.add_flow(dp, PRIO_M2M, parser.OFPMatch(**fields), None,
                          idle_timeout=DROP_IDLE_SECONDS, cookie=COOKIE_DROP,
                          instructions=[parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [])])
        self.packet_out(dp, ports, data, in_port=in_port)

    # L2

    def forward(self, dp, in_port, eth, data):
        if self.mode == "learning":
            self.forward_learning(dp, in_port, eth, data)
        else:
            self.forward_shortest(dp, in_port, eth, data)

    def forward_learning(self, dp, in_port, eth, data):
        ofp, parser = dp.ofproto, dp.ofproto_parser
        table = self.mac_to_port.setdefault(dp.id, {})
        table[eth.src] = in_port
        out_port = table.get(eth.dst, ofp.OFPP_FLOOD)
        if out_port != ofp.OFPP_FLOOD:
            match = parser.OFPMatch(in_port=in_port, eth_src=eth.src, eth_dst=eth.dst)
            self.add_flow(dp, PRIO_L2, match, [parser.OFPActionOutput(out_port)],
                          cookie=COOKIE_L2)
        self.packet_out(dp, [out_port], data, in_port=in_port)

    def forward_shortest(self, dp, in_port, eth, data):
        dst = self.topo.hosts.get(eth.dst)
        if dst is None or dst.dpid not in self.datapaths:
            self.flood_edges(dp.id, in_port, data)
            return
        path = self.topo.switch_path(dp.id, dst.dpid)
        if path is None:
            self.plog("no path from switch %x to %s: dropped", dp.id, eth.dst)
            return
        # The flows match the pair (source, destination), not the destination alone: a host is
        # learnt from its packet-ins, and one that only ever answered would otherwise never send
        # one (its replies would ride the flows toward the asker) and stay unknown, its traffic
        # flooded through the controller for good.
        src = self.topo.hosts.get(eth.src)
        if src is not None and src.dpid in self.datapaths:
            self.install_path(path + [(dst.dpid, dst.port)], eth.src, eth.dst)
            back = self.topo.host_path(dst, src)
            if back is not None:
                self.install_path(back, eth.dst, eth.src)
        # Out at the last switch: the flows just sent to the others may not be in place yet.
        self.packet_out(self.datapaths[dst.dpid], [dst.port], data)

    def install_path(self, hops, src_mac, dst_mac):
        for dpid, port in hops:
            dp = self.datapaths.get(dpid)
            if dp is None:
                continue
            parser = dp.ofproto_parser
            self.add_flow(dp, PRIO_L2, parser.OFPMatch(eth_src=src_mac, eth_dst=dst_mac),
                          [parser.OFPActionOutput(port)], cookie=COOKIE_L2)

    def flood_edges(self, dpid, in_port, data):
        for other, dp in self.datapaths.items():
            ports = [p for p in self.topo.edge_ports(other) if (other, p) != (dpid, in_port)]
            self.packet_out(dp, ports, data)
