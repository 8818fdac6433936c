"""The pure logic of the MQTT2MULTICAST server: no os-ken, no sockets, no clocks.

mqtt2multicast.py (the os-ken application) feeds it REQUEST payloads and topology facts and turns
the abstract operations it returns into OpenFlow messages, so everything here can be unit tested
(m2m_logic_test.py) without a switch. The wire format and the behaviour it keeps are those of the
original server (docs: mqtt2multicast.md sections 1 and 3); the places where it deliberately differs
are marked "divergence".

- Messages: parse_request / build_request (type 1) and build_reply / parse_reply (type 2), all
  fields big-endian.
- Addresses: AddressAllocator, the n-th distinct topic string (n from 0) gets first + n (225.0.0.0
  by default), with carry between octets, and group id n + 1. It stops at the end of 224.0.0.0/4
  (239.255.255.255) instead of running past it (divergence: the original had no bound).
- Membership: Server keeps receivers and transmitters as sets. A receiver's filter may hold MQTT
  wildcards; it is then a receiver of every topic it matches, now and later.
- Topology: switch-to-switch links with ports, hosts at (dpid, port), BFS shortest paths.
- Trees: the desired group buckets per (switch, group), shared per topic (as the original), or one
  group per (topic, transmitter) matching ipv4_src as well (for topologies with loops); and
  Reconciler, the diff between what is installed and what is desired as group ADD / MODIFY / DELETE
  and ipv4_dst flow add / delete operations.
"""

import collections
import ipaddress
import struct

TYPE_REQUEST = 1
TYPE_REPLY = 2
FLAG_TRANSMITTER = 0  # "I will publish on this topic"
FLAG_RECEIVER = 1  # "a local client subscribed"
FLAG_LEAVE = 2  # "the last local subscriber is gone" (no REPLY)

REQUEST_HEADER = 8  # type 1, tid 4, flags 1, topic length 2
REPLY_LENGTH = 10
MULTICAST_NET = ipaddress.IPv4Network("224.0.0.0/4")


class Malformed(ValueError):
    """A datagram that is no valid REQUEST (or REPLY): the caller logs it and drops it."""


Request = collections.namedtuple("Request", "tid flags topic")  # topic: bytes
Reply = collections.namedtuple("Reply", "tid flags address")  # address: dotted string


def parse_request(payload):
    """A REQUEST from a UDP payload, or Malformed. The topic is the raw bytes [8, 8 + length).

    The original read past the end silently (a short datagram gave a short topic); here a
    datagram shorter than its topic length is refused. Bytes after the topic are ignored, as
    they were by the original. An empty topic is refused: MQTT has no empty topic or filter."""
    payload = bytes(payload)
    if len(payload) < REQUEST_HEADER:
        raise Malformed("%d bytes, shorter than the %d-byte header" % (len(payload),
                                                                      REQUEST_HEADER))
    kind, tid, flags, length = struct.unpack(">BIBH", payload[:REQUEST_HEADER])
    if kind != TYPE_REQUEST:
        raise Malformed("packet type %d is not a REQUEST" % kind)
    if len(payload) < REQUEST_HEADER + length:
        raise Malformed("topic length %d but %d topic bytes" % (length,
                                                                len(payload) - REQUEST_HEADER))
    if length == 0:
        raise Malformed("empty topic")
    return Request(tid, flags, payload[REQUEST_HEADER:REQUEST_HEADER + length])


def build_request(tid, flags, topic):
    if isinstance(topic, str):
        topic = topic.encode("utf-8")  # the length counts bytes, not characters
    return struct.pack(">BIBH", TYPE_REQUEST, tid, flags, len(topic)) + topic


def build_reply(tid, address):
    """The 10-byte REPLY: type 2, the REQUEST's tid, flags 0, the address."""
    return struct.pack(">BIB", TYPE_REPLY, tid, 0) + ipaddress.IPv4Address(address).packed


def parse_reply(payload):
    payload = bytes(payload)
    if len(payload) < REPLY_LENGTH:
        raise Malformed("%d bytes, a REPLY has %d" % (len(payload), REPLY_LENGTH))
    kind, tid, flags = struct.unpack(">BIB", payload[:6])
    if kind != TYPE_REPLY:
        raise Malformed("packet type %d is not a REPLY" % kind)
    return Reply(tid, flags, str(ipaddress.IPv4Address(payload[6:10])))


# -- addresses -----------------------------------------------------------------------------------

class Exhausted(Exception):
    """No multicast address is left for a new topic."""


class AddressAllocator:
    """Topic string -> (index n, address first + n). Permanent for the server's lifetime, as in
    the original; the same topic always gets the same address, whoever asks."""

    def __init__(self, first="225.0.0.0"):
        self.first = ipaddress.IPv4Address(first)
        if self.first not in MULTICAST_NET:
            raise ValueError("%s is not a multicast address (224.0.0.0/4)" % first)
        self.capacity = int(MULTICAST_NET.broadcast_address) - int(self.first) + 1
        self.index = {}  # topic bytes -> n
        self.topics = []  # n -> topic bytes

    def lookup(self, topic):
        return self.index.get(topic)

    def allocate(self, topic):
        """The topic's index, allocating the next one for a new topic; Exhausted past
        239.255.255.255."""
        n = self.index.get(topic)
        if n is not None:
            return n
        n = len(self.topics)
        if n >= self.capacity:
            raise Exhausted("all %d addresses from %s to %s are taken"
                            % (self.capacity, self.first, MULTICAST_NET.broadcast_address))
        self.index[topic] = n
        self.topics.append(topic)
        return n

    def address(self, n):
        return str(self.first + n)

    def topic_of_address(self, address):
        """The topic whose address this is, or None."""
        try:
            n = int(ipaddress.IPv4Address(address)) - int(self.first)
        except ValueError:
            return None
        if 0 <= n < len(self.topics):
            return self.topics[n]
        return None


# -- MQTT topic matching -------------------------------------------------------------------------

def is_wildcard_filter(topic):
    return b"+" in topic or b"#" in topic


def valid_filter(flt):
    levels = flt.split(b"/")
    for i, level in enumerate(levels):
        if b"#" in level and (level != b"#" or i != len(levels) - 1):
            return False
        if b"+" in level and level != b"+":
            return False
    return True


def filter_matches(flt, topic):
    """Whether the MQTT filter `flt` matches the topic name `topic` (both bytes), by MQTT 3.1.1
    section 4.7: '+' is one whole level, a final '#' is any number of levels including none
    ("a/#" matches "a"), and a topic beginning with '$' is not matched by a filter beginning with
    a wildcard. A topic name holding wildcards is matched only by the identical string, and so is
    an invalid filter (the original compared all filters literally)."""
    if flt == topic:
        return True
    if is_wildcard_filter(topic) or not is_wildcard_filter(flt) or not valid_filter(flt):
        return False
    if topic.startswith(b"$") and flt[:1] in (b"+", b"#"):
        return False
    f_levels = flt.split(b"/")
    t_levels = topic.split(b"/")
    for i, f in enumerate(f_levels):
        if f == b"#":
            return True
        if i >= len(t_levels):
            return False
        if f != b"+" and f != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)


# -- topology ------------------------------------------------------------------------------------

Host = collections.namedtuple("Host", "mac ip dpid port")


class Topology:
    """Switches with their ports, directed switch-to-switch links (os-ken reports each direction
    as its own link), and hosts attached at (dpid, port). A port that carries a link is not an
    edge port: hosts are never learnt there, and a host found on a port that becomes a link is
    forgotten."""

    def __init__(self):
        self.ports = {}  # dpid -> set of port numbers (physical ports only)
        self.links = {}  # dpid -> {port: (peer dpid, peer port)}
        self.hosts = {}  # mac -> Host
        self.by_ip = {}  # ip -> mac

    # switches and links

    def add_switch(self, dpid, ports=()):
        self.ports.setdefault(dpid, set()).update(ports)
        self.links.setdefault(dpid, {})

    def add_port(self, dpid, port):
        self.ports.setdefault(dpid, set()).add(port)

    def remove_port(self, dpid, port):
        self.ports.get(dpid, set()).discard(port)
        for h in [h for h in self.hosts.values() if (h.dpid, h.port) == (dpid, port)]:
            self.forget_host(h.mac)

    def remove_switch(self, dpid):
        """Forgets the switch, every link to or from it and the hosts on it."""
        self.ports.pop(dpid, None)
        self.links.pop(dpid, None)
        for links in self.links.values():
            for port in [p for p, (peer, _) in links.items() if peer == dpid]:
                del links[port]
        for h in [h for h in self.hosts.values() if h.dpid == dpid]:
            self.forget_host(h.mac)

    def add_link(self, src, src_port, dst, dst_port):
        """Returns whether anything changed."""
        self.add_switch(src)
        self.add_switch(dst)
        self.ports[src].add(src_port)
        if self.links[src].get(src_port) == (dst, dst_port):
            return False
        self.links[src][src_port] = (dst, dst_port)
        for h in [h for h in self.hosts.values() if (h.dpid, h.port) == (src, src_port)]:
            self.forget_host(h.mac)
        return True

    def remove_link(self, src, src_port, dst=None, dst_port=None):
        links = self.links.get(src, {})
        if src_port in links and (dst is None or links[src_port] == (dst, dst_port)):
            del links[src_port]
            return True
        return False

    def is_link_port(self, dpid, port):
        return port in self.links.get(dpid, {})

    def edge_ports(self, dpid):
        return sorted(p for p in self.ports.get(dpid, ()) if not self.is_link_port(dpid, p))

    # hosts

    def learn_host(self, mac, ip, dpid, port):
        """Records that `mac` (with `ip`, which may be None) sits at (dpid, port). Returns
        "new", "moved" (its location or address changed) or None (nothing new, or not learnt
        because the port carries a link)."""
        if self.is_link_port(dpid, port):
            return None
        old = self.hosts.get(mac)
        if ip is None and old is not None:
            ip = old.ip
        new = Host(mac, ip, dpid, port)
        if old == new:
            return None
        if old is not None and old.ip and self.by_ip.get(old.ip) == mac:
            del self.by_ip[old.ip]
        if ip:
            other = self.by_ip.get(ip)
            if other is not None and other != mac:  # the address went to another MAC
                self.hosts[other] = self.hosts[other]._replace(ip=None)
            self.by_ip[ip] = mac
        self.hosts[mac] = new
        return "new" if old is None else "moved"

    def forget_host(self, mac):
        h = self.hosts.pop(mac, None)
        if h is not None and h.ip and self.by_ip.get(h.ip) == mac:
            del self.by_ip[h.ip]

    def host_by_ip(self, ip):
        mac = self.by_ip.get(ip)
        return self.hosts.get(mac) if mac else None

    # paths

    def _bfs(self, src):
        """Predecessors from src over the directed links, neighbours in port order (so the result
        is deterministic): {dpid: (previous dpid, its out port)}."""
        prev = {src: None}
        queue = collections.deque([src])
        while queue:
            u = queue.popleft()
            for port in sorted(self.links.get(u, {})):
                v, _ = self.links[u][port]
                if v not in prev and v in self.links:
                    prev[v] = (u, port)
                    queue.append(v)
        return prev

    def switch_path(self, src, dst):
        """[(dpid, out port toward the next switch), ...] from switch src to switch dst, dst not
        included; [] when src == dst; None when dst is unreachable."""
        if src == dst:
            return []
        prev = self._bfs(src)
        if dst not in prev:
            return None
        hops = []
        node = dst
        while prev[node] is not None:
            u, port = prev[node]
            hops.append((u, port))
            node = u
        hops.reverse()
        return hops

    def host_path(self, src_host, dst_host):
        """[(dpid, out port), ...] a frame from src_host takes to reach dst_host, ending with dst's
        host port; None when there is no path."""
        hops = self.switch_path(src_host.dpid, dst_host.dpid)
        if hops is None:
            return None
        return hops + [(dst_host.dpid, dst_host.port)]

    def spanning_tree_ports(self, root=None):
        """{dpid: set of link ports} of a BFS spanning tree of the switches reachable from root
        (the lowest dpid by default)."""
        if not self.links:
            return {}
        root = min(self.links) if root is None else root
        prev = self._bfs(root)
        tree = {d: set() for d in prev}
        for v, p in prev.items():
            if p is None:
                continue
            u, port = p
            tree[u].add(port)
            back = [bp for bp, (peer, _) in self.links.get(v, {}).items() if peer == u]
            if back:
                tree[v].add(min(back))
        return tree


# -- the server's state ----------------------------------------------------------------------------

Outcome = collections.namedtuple("Outcome", "reply topics message")
# reply: the REPLY payload or None; topics: topic names (bytes) whose trees may have changed;
# message: a log line.

# A desired or installed entry of one switch: the group's buckets (output ports) and what its
# ipv4 flow matches.
Entry = collections.namedtuple("Entry", "buckets address source")  # source: None in shared mode

PER_TRANSMITTER_SLOTS = 255


def shared_group_id(n):
    """Topic n's group in shared mode: n + 1, as the original (225.0.0.0 <-> group 1)."""
    return n + 1


def per_transmitter_group_id(n, slot):
    """Per-transmitter mode: topic n's slot-th distinct transmitter (slot 1..255, first seen
    first) has group (n + 1) * 256 + slot, so `dump-groups` shows topic and transmitter in the
    hex id (group 0x101: topic 0, its first transmitter). Slots are never reused: transmitters
    are never removed (the protocol has no "stopped publishing")."""
    return (n + 1) * 256 + slot


class Server:
    """Topics, addresses, receivers and transmitters, and the trees they call for."""

    def __init__(self, first_address="225.0.0.0", per_transmitter=False):
        self.alloc = AddressAllocator(first_address)
        self.per_transmitter = per_transmitter
        self.receivers = {}  # topic or filter (bytes) -> set of IPs
        self.transmitters = {}  # topic (bytes) -> set of IPs
        self.slots = {}  # topic -> {transmitter IP: slot} (per-transmitter mode)

    # requests

    def handle_request(self, request, source_ip):
        """Applies a parsed REQUEST from `source_ip`. Flags 0 and 1 are answered with the topic's
        address; flags 2 is not answered and removes the receiver; any other flags only allocate
        (as in the original). Flags 2 for a topic never seen still takes the next address: parity
        with the original, so the numbering of a mixed deployment stays the same."""
        topic, flags = request.topic, request.flags
        name = topic.decode("utf-8", "replace")
        try:
            n = self.alloc.allocate(topic)
        except Exhausted as e:
            return Outcome(None, [], "REQUEST flags=%d topic=%s from %s refused: %s"
                           % (flags, name, source_ip, e))
        address = self.alloc.address(n)
        reply = None
        changed = []
        if flags == FLAG_TRANSMITTER:
            reply = build_reply(request.tid, address)
            if self.add_transmitter(topic, source_ip):
                changed = [topic]
        elif flags == FLAG_RECEIVER:
            reply = build_reply(request.tid, address)
            if source_ip not in self.receivers.setdefault(topic, set()):
                self.receivers[topic].add(source_ip)
                changed = self.topics_matching(topic)
        elif flags == FLAG_LEAVE:
            held = self.receivers.get(topic)
            if held is not None and source_ip in held:
                held.discard(source_ip)
                if not held:
                    del self.receivers[topic]
                changed = self.topics_matching(topic)
        return Outcome(reply, changed, "REQUEST flags=%d topic=%s from %s -> %s"
                       % (flags, name, source_ip, address))

    def add_transmitter(self, topic, ip):
        """Returns whether `ip` is a new transmitter of `topic` (which must have an address)."""
        held = self.transmitters.setdefault(topic, set())
        if ip in held:
            return False
        if self.per_transmitter:
            slots = self.slots.setdefault(topic, {})
            if ip not in slots:
                if len(slots) >= PER_TRANSMITTER_SLOTS:
                    return False  # no group id left for it: it stays off the tree
                slots[ip] = len(slots) + 1
        held.add(ip)
        return True

    def topics_matching(self, flt):
        """The topics with an address that `flt` (a topic or a filter) makes `receiver_set`
        change for."""
        return [t for t in self.alloc.topics if filter_matches(flt, t)]

    def receiver_set(self, topic):
        """Every receiver of `topic`: those that asked for it, and those whose filter matches it."""
        out = set()
        for flt, ips in self.receivers.items():
            if filter_matches(flt, topic):
                out |= ips
        return out

    # trees

    def groups_of(self, topic):
        """[(group id, transmitter IPs it carries, source match)] for a topic."""
        n = self.alloc.lookup(topic)
        txs = self.transmitters.get(topic, set())
        if n is None or not txs:
            return []
        if not self.per_transmitter:
            return [(shared_group_id(n), sorted(txs), None)]
        slots = self.slots.get(topic, {})
        return [(per_transmitter_group_id(n, slots[ip]), [ip], ip)
                for ip in sorted(txs, key=lambda ip: slots[ip]) if ip in slots]

    def desired(self, topology, topics=None):
        """{(dpid, group id): Entry} for `topics` (default all): per group, the union over
        (transmitter, receiver) pairs of the next-hop ports along their shortest path. A
        transmitter or receiver with no known location, an unreachable pair and a host paired
        with itself add nothing."""
        out = {}
        for topic in (self.alloc.topics if topics is None else topics):
            n = self.alloc.lookup(topic)
            if n is None:
                continue
            address = self.alloc.address(n)
            receivers = [topology.host_by_ip(ip) for ip in sorted(self.receiver_set(topic))]
            receivers = [r for r in receivers if r is not None]
            for group, txs, source in self.groups_of(topic):
                buckets = {}
                for tx_ip in txs:
                    tx = topology.host_by_ip(tx_ip)
                    if tx is None:
                        continue
                    for rx in receivers:
                        if rx.mac == tx.mac:
                            continue
                        path = topology.host_path(tx, rx)
                        for dpid, port in path or ():
                            buckets.setdefault(dpid, set()).add(port)
                for dpid, ports in buckets.items():
                    out[(dpid, group)] = Entry(frozenset(ports), address, source)
        return out

    def group_ids_of(self, topic):
        """Every group id the topic may have had (for the Reconciler's scope)."""
        n = self.alloc.lookup(topic)
        if n is None:
            return set()
        if not self.per_transmitter:
            return {shared_group_id(n)}
        return {per_transmitter_group_id(n, s) for s in self.slots.get(topic, {}).values()}


# -- installed vs desired ------------------------------------------------------------------------

Op = collections.namedtuple("Op", "kind dpid group buckets address source")
GROUP_ADD, GROUP_MODIFY, GROUP_DELETE = "group_add", "group_modify", "group_delete"
FLOW_ADD, FLOW_DELETE = "flow_add", "flow_delete"


class Reconciler:
    """What each switch holds: {(dpid, group): [Entry, flow present]}. diff() gives the operations
    that turn it into the desired state, and records them as done: the caller sends them.

    Per (switch, group): ADD the group the first time, then its flow; MODIFY when the bucket set
    changed; DELETE the flow and then the group when the switch left the tree or the receivers
    are gone. A flow the switch removed (idle timeout) is marked absent by flow_removed(), and
    the next diff adds it again without touching the group."""

    def __init__(self):
        self.installed = {}

    def diff(self, desired, scope=None):
        """Operations from the installed state to `desired`. `scope` (a predicate over
        (dpid, group)) limits what is compared: a desired state computed for some topics only
        must not delete the others' groups."""
        ops = []
        keys = set(desired) | set(self.installed)
        for key in sorted(keys):
            if scope is not None and not scope(key):
                continue
            dpid, group = key
            want = desired.get(key)
            have = self.installed.get(key)
            if want is not None and not want.buckets:
                want = None
            if want is None and have is None:
                continue
            if want is None:
                entry, flow = have
                ops.append(Op(FLOW_DELETE, dpid, group, entry.buckets, entry.address,
                              entry.source))
                ops.append(Op(GROUP_DELETE, dpid, group, entry.buckets, entry.address,
                              entry.source))
                del self.installed[key]
                continue
            if have is None:
                ops.append(Op(GROUP_ADD, dpid, group, want.buckets, want.address, want.source))
                ops.append(Op(FLOW_ADD, dpid, group, want.buckets, want.address, want.source))
                self.installed[key] = [want, True]
                continue
            entry, flow = have
            if entry.address != want.address or entry.source != want.source:
                # The match changed (it does not, with permanent addresses): replace the flow.
                ops.append(Op(FLOW_DELETE, dpid, group, entry.buckets, entry.address,
                              entry.source))
                flow = False
            if entry.buckets != want.buckets:
                ops.append(Op(GROUP_MODIFY, dpid, group, want.buckets, want.address,
                              want.source))
            if not flow:
                ops.append(Op(FLOW_ADD, dpid, group, want.buckets, want.address, want.source))
            self.installed[key] = [want, True]
        return ops

    def flow_removed(self, dpid, group):
        have = self.installed.get((dpid, group))
        if have is not None:
            have[1] = False

    def forget(self, dpid, group):
        """A group the switch refused (an OFPT_ERROR for its message): what it holds is unknown,
        so nothing is recorded and the next diff adds it anew."""
        self.installed.pop((dpid, group), None)

    def forget_switch(self, dpid):
        """A switch that left (or reconnected and was wiped): nothing of it is installed."""
        for key in [k for k in self.installed if k[0] == dpid]:
            del self.installed[key]

    def buckets(self, dpid, group):
        have = self.installed.get((dpid, group))
        return have[0].buckets if have else frozenset()
