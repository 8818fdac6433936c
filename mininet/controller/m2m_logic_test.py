#!/usr/bin/python3
"""Unit tests of m2m_logic (the MQTT2MULTICAST server's pure logic): no os-ken, no root.

Run: /usr/bin/python3 mininet/controller/m2m_logic_test.py (exit status 0 when every test passes).
The byte vectors are the specification's (mqtt2multicast.md sections 1.2 and 1.3).
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import m2m_logic as m  # noqa: E402


def ip(i):
    return "192.168.1.%d" % (100 + i)


def mac(i):
    return "00:00:00:00:00:%02x" % i


def reference_tree():
    """The reference tree: s1 at the root, s2 (h1, h2) and s3 (h3, h4) below it. Port numbers are
    deliberately not 1, 2, ...: the logic must use the ones it is given."""
    t = m.Topology()
    t.add_switch(1, [11, 12])
    t.add_switch(2, [21, 22, 23])
    t.add_switch(3, [31, 32, 33])
    for a, ap, b, bp in ((1, 11, 2, 21), (1, 12, 3, 31)):
        t.add_link(a, ap, b, bp)
        t.add_link(b, bp, a, ap)
    t.learn_host(mac(1), ip(1), 2, 22)
    t.learn_host(mac(2), ip(2), 2, 23)
    t.learn_host(mac(3), ip(3), 3, 32)
    t.learn_host(mac(4), ip(4), 3, 33)
    return t


def request(flags, topic, tid=0x12345678):
    return m.parse_request(m.build_request(tid, flags, topic))


class Messages(unittest.TestCase):
    def test_request_bytes_of_the_specification(self):
        raw = bytes.fromhex("01 12 34 56 78 01 00 06 74 6f 70 69 63 31")
        self.assertEqual(m.build_request(0x12345678, 1, "topic1"), raw)
        self.assertEqual(m.parse_request(raw), m.Request(0x12345678, 1, b"topic1"))

    def test_reply_bytes_of_the_specification(self):
        raw = bytes.fromhex("02 12 34 56 78 00 e1 00 00 00")
        self.assertEqual(m.build_reply(0x12345678, "225.0.0.0"), raw)
        self.assertEqual(len(raw), m.REPLY_LENGTH)
        self.assertEqual(m.parse_reply(raw), m.Reply(0x12345678, 0, "225.0.0.0"))

    def test_topic_length_counts_bytes(self):
        raw = m.build_request(1, 0, "caf\u00e9")
        self.assertEqual(raw[6:8], b"\x00\x05")
        self.assertEqual(m.parse_request(raw).topic, "caf\u00e9".encode())

    def test_malformed_requests_are_rejected(self):
        good = m.build_request(7, 1, "topic1")
        for bad in (good[:5], b"", good[:7], good[:-1], b"\x03" + good[1:],
                    b"\x02" + good[1:], m.build_request(7, 1, b"")):
            with self.assertRaises(m.Malformed, msg=bad.hex()):
                m.parse_request(bad)

    def test_trailing_bytes_after_the_topic_are_ignored(self):
        self.assertEqual(m.parse_request(m.build_request(7, 0, "a") + b"zz").topic, b"a")

    def test_short_reply_rejected(self):
        with self.assertRaises(m.Malformed):
            m.parse_reply(bytes.fromhex("02 12 34 56 78 00 e1 00 00"))


class Allocation(unittest.TestCase):
    def test_order_carry_and_group_ids(self):
        a = m.AddressAllocator()
        self.assertEqual(a.address(a.allocate(b"topic1")), "225.0.0.0")
        self.assertEqual(a.address(a.allocate(b"topic2")), "225.0.0.1")
        self.assertEqual(a.address(a.allocate(b"topic1")), "225.0.0.0")
        for i in range(3, 257):
            a.allocate(b"topic%d" % i)
        self.assertEqual(a.address(a.lookup(b"topic256")), "225.0.0.255")
        n = a.allocate(b"topic257")
        self.assertEqual(a.address(n), "225.0.1.0")
        self.assertEqual(m.shared_group_id(n), 257)
        self.assertEqual(m.shared_group_id(a.lookup(b"topic1")), 1)
        self.assertEqual(a.topic_of_address("225.0.1.0"), b"topic257")
        self.assertIsNone(a.topic_of_address("225.0.1.1"))
        self.assertIsNone(a.topic_of_address("10.0.0.1"))

    def test_stops_at_the_end_of_224_slash_4(self):
        a = m.AddressAllocator("239.255.255.254")
        self.assertEqual(a.address(a.allocate(b"x")), "239.255.255.254")
        self.assertEqual(a.address(a.allocate(b"y")), "239.255.255.255")
        with self.assertRaises(m.Exhausted):
            a.allocate(b"z")
        self.assertEqual(a.address(a.allocate(b"x")), "239.255.255.254")

    def test_first_address_must_be_multicast(self):
        with self.assertRaises(ValueError):
            m.AddressAllocator("192.168.1.1")

    def test_server_refuses_when_exhausted(self):
        s = m.Server("239.255.255.255")
        self.assertIsNotNone(s.handle_request(request(1, "a"), ip(1)).reply)
        out = s.handle_request(request(1, "b"), ip(1))
        self.assertIsNone(out.reply)
        self.assertIn("refused", out.message)


class Requests(unittest.TestCase):
    def test_flags_0_and_1_answered_flags_2_not(self):
        s = m.Server()
        out = s.handle_request(request(1, "topic1"), ip(1))
        self.assertEqual(out.reply, bytes.fromhex("02 12 34 56 78 00 e1 00 00 00"))
        self.assertEqual(out.topics, [b"topic1"])
        out = s.handle_request(request(0, "topic1", tid=5), ip(4))
        self.assertEqual(m.parse_reply(out.reply), m.Reply(5, 0, "225.0.0.0"))
        out = s.handle_request(request(2, "topic1"), ip(1))
        self.assertIsNone(out.reply)
        self.assertEqual(out.topics, [b"topic1"])
        self.assertNotIn(b"topic1", s.receivers)

    def test_sets_not_lists(self):
        s = m.Server()
        s.handle_request(request(1, "t"), ip(1))
        out = s.handle_request(request(1, "t"), ip(1))
        self.assertIsNotNone(out.reply)  # a repeat (a refresh) is answered
        self.assertEqual(out.topics, [])  # and changes nothing
        s.handle_request(request(0, "t"), ip(4))
        self.assertEqual(s.handle_request(request(0, "t"), ip(4)).topics, [])
        self.assertEqual(s.receivers[b"t"], {ip(1)})
        self.assertEqual(s.transmitters[b"t"], {ip(4)})
        s.handle_request(request(2, "t"), ip(1))
        self.assertEqual(s.handle_request(request(2, "t"), ip(1)).topics, [])

    def test_flags_2_for_an_unknown_topic_still_allocates(self):
        s = m.Server()
        s.handle_request(request(2, "ghost"), ip(1))
        out = s.handle_request(request(1, "real"), ip(1))
        self.assertEqual(m.parse_reply(out.reply).address, "225.0.0.1")

    def test_other_flags_allocate_only(self):
        s = m.Server()
        out = s.handle_request(request(9, "odd"), ip(1))
        self.assertIsNone(out.reply)
        self.assertEqual(s.alloc.lookup(b"odd"), 0)
        self.assertEqual((s.receivers, s.transmitters), ({}, {}))


class Matching(unittest.TestCase):
    def test_mqtt_rules(self):
        yes = [("a/#", "a"), ("a/#", "a/b/c"), ("#", "a/b"), ("+/b", "a/b"), ("a/+", "a/"),
               ("+", "a"), ("a/+/c", "a/x/c"), ("+/+", "/x"), ("$SYS/#", "$SYS/x"),
               ("a/b", "a/b"), ("$SYS/+", "$SYS/x")]
        no = [("a/+", "a"), ("a/+", "a/b/c"), ("+", "a/b"), ("#", "$SYS/x"), ("+/x", "$SYS/x"),
              ("a/b", "a/c"), ("a/#/b", "a/x/b"), ("a+", "ab"), ("a/#", "b"),
              ("a/+", "a/+x")]
        for f, t in yes:
            self.assertTrue(m.filter_matches(f.encode(), t.encode()), (f, t))
        for f, t in no:
            self.assertFalse(m.filter_matches(f.encode(), t.encode()), (f, t))


class TopologyTest(unittest.TestCase):
    def test_paths_use_the_given_ports(self):
        t = reference_tree()
        self.assertEqual(t.host_path(t.host_by_ip(ip(4)), t.host_by_ip(ip(1))),
                         [(3, 31), (1, 11), (2, 22)])
        self.assertEqual(t.host_path(t.host_by_ip(ip(1)), t.host_by_ip(ip(2))), [(2, 23)])
        self.assertEqual(t.edge_ports(2), [22, 23])

    def test_hosts_are_not_learnt_on_link_ports_and_move(self):
        t = reference_tree()
        self.assertIsNone(t.learn_host(mac(1), ip(1), 1, 11))
        self.assertEqual(t.host_by_ip(ip(1)).dpid, 2)
        self.assertIsNone(t.learn_host(mac(1), ip(1), 2, 22))
        self.assertEqual(t.learn_host(mac(1), ip(1), 3, 32), "moved")
        self.assertEqual(t.host_by_ip(ip(1)), m.Host(mac(1), ip(1), 3, 32))
        self.assertEqual(t.learn_host(mac(9), None, 3, 33), "new")
        self.assertIsNone(t.host_by_ip(None))

    def test_host_on_a_port_that_becomes_a_link_is_forgotten(self):
        t = m.Topology()
        t.add_switch(1, [1, 2])
        t.add_switch(2, [1, 2])
        t.learn_host(mac(1), ip(1), 1, 1)  # learnt before LLDP found the link
        t.add_link(1, 1, 2, 1)
        self.assertIsNone(t.host_by_ip(ip(1)))

    def test_unreachable(self):
        t = reference_tree()
        t.remove_link(1, 12, 3, 31)
        self.assertIsNone(t.switch_path(2, 3))
        self.assertIsNotNone(t.switch_path(3, 2))  # the other direction is still known

    def test_remove_switch(self):
        t = reference_tree()
        t.remove_switch(3)
        self.assertIsNone(t.host_by_ip(ip(4)))
        self.assertNotIn(12, t.links[1])

    def test_spanning_tree_of_a_triangle(self):
        t = m.Topology()
        for a, ap, b, bp in ((1, 1, 2, 1), (2, 2, 3, 1), (3, 2, 1, 2)):
            t.add_link(a, ap, b, bp)
            t.add_link(b, bp, a, ap)
        tree = t.spanning_tree_ports()
        self.assertEqual(sum(len(p) for p in tree.values()), 4)  # 2 links, both ends
        self.assertEqual(tree[1], {1, 2})


class Trees(unittest.TestCase):
    def setUp(self):
        self.t = reference_tree()
        self.s = m.Server()
        self.r = m.Reconciler()

    def req(self, flags, topic, host):
        return self.s.handle_request(request(flags, topic), ip(host))

    def ops(self):
        return [(o.kind, o.dpid, o.group, sorted(o.buckets)) for o in
                self.r.diff(self.s.desired(self.t))]

    def test_t7_tree_install_in_either_order(self):
        for order in ((1, 0), (0, 1)):
            self.setUp()
            for flags in order:
                self.req(flags, "topic1", 1 if flags == 1 else 4)
            ops = self.ops()
            self.assertEqual(sorted(ops), sorted([
                ("group_add", 1, 1, [11]), ("flow_add", 1, 1, [11]),
                ("group_add", 2, 1, [22]), ("flow_add", 2, 1, [22]),
                ("group_add", 3, 1, [31]), ("flow_add", 3, 1, [31])]))
            # the group exists before the flow that points at it
            for dpid in (1, 2, 3):
                kinds = [k for k, d, _, _ in ops if d == dpid]
                self.assertEqual(kinds, ["group_add", "flow_add"])
            self.assertEqual(self.ops(), [])  # nothing more to do

    def test_t8_second_receiver_on_a_switch_on_the_tree_modifies(self):
        self.req(1, "topic1", 1)
        self.req(0, "topic1", 4)
        self.ops()
        self.req(1, "topic1", 2)
        self.assertEqual(self.ops(), [("group_modify", 2, 1, [22, 23])])

    def test_receiver_under_a_new_branch_adds_new_switches_and_the_branch_point(self):
        self.req(1, "topic1", 1)
        self.req(0, "topic1", 2)
        self.assertEqual(self.ops(), [("group_add", 2, 1, [22]), ("flow_add", 2, 1, [22])])
        self.req(1, "topic1", 3)
        self.assertEqual(sorted(self.ops()), sorted([
            ("group_add", 1, 1, [12]), ("flow_add", 1, 1, [12]),
            ("group_add", 3, 1, [32]), ("flow_add", 3, 1, [32]),
            ("group_modify", 2, 1, [21, 22])]))

    def test_t9_shrink_then_delete(self):
        self.req(1, "topic1", 1)
        self.req(1, "topic1", 2)
        self.req(0, "topic1", 4)
        self.ops()
        self.req(2, "topic1", 2)
        self.assertEqual(self.ops(), [("group_modify", 2, 1, [22])])
        self.req(2, "topic1", 1)
        ops = self.ops()
        self.assertEqual(sorted(ops), sorted([
            ("flow_delete", d, 1, [p]) for d, p in ((1, 11), (2, 22), (3, 31))] + [
            ("group_delete", d, 1, [p]) for d, p in ((1, 11), (2, 22), (3, 31))]))
        for dpid in (1, 2, 3):  # the flow goes before the group it points at
            self.assertEqual([k for k, d, _, _ in ops if d == dpid],
                             ["flow_delete", "group_delete"])
        self.assertEqual(self.r.installed, {})

    def test_switch_leaving_the_tree_is_deleted_there_only(self):
        self.req(1, "topic1", 1)
        self.req(1, "topic1", 3)
        self.req(0, "topic1", 4)
        self.ops()
        self.req(2, "topic1", 1)
        self.assertEqual(sorted(self.ops()), sorted([
            ("flow_delete", 1, 1, [11]), ("group_delete", 1, 1, [11]),
            ("flow_delete", 2, 1, [22]), ("group_delete", 2, 1, [22]),
            ("group_modify", 3, 1, [32])]))

    def test_transmitter_and_receiver_on_one_host_or_one_switch(self):
        self.req(1, "t", 1)
        self.req(0, "t", 1)
        self.assertEqual(self.ops(), [])  # a proxy needs no tree to itself
        self.req(0, "t", 2)
        self.assertEqual(self.ops(), [("group_add", 2, 1, [22]), ("flow_add", 2, 1, [22])])

    def test_unknown_hosts_are_skipped_until_learnt(self):
        self.t.forget_host(mac(4))
        self.req(1, "t", 1)
        self.req(0, "t", 4)
        self.assertEqual(self.ops(), [])
        self.t.learn_host(mac(4), ip(4), 3, 33)
        self.assertEqual(len(self.ops()), 6)

    def test_wildcard_receivers_now_and_later(self):
        self.req(0, "sensors/t1", 4)
        self.req(1, "sensors/#", 1)  # gets its own address (parity), is a receiver of sensors/t1
        self.assertEqual(self.s.alloc.lookup(b"sensors/#"), 1)
        self.assertEqual(self.s.receiver_set(b"sensors/t1"), {ip(1)})
        self.assertEqual(len(self.ops()), 6)
        out = self.req(0, "sensors/t2", 3)  # a topic created later
        self.assertEqual(m.parse_reply(out.reply).address, "225.0.0.2")
        self.assertEqual(sorted(self.ops()), sorted([
            ("group_add", 1, 3, [11]), ("flow_add", 1, 3, [11]),
            ("group_add", 2, 3, [22]), ("flow_add", 2, 3, [22]),
            ("group_add", 3, 3, [31]), ("flow_add", 3, 3, [31])]))
        self.req(0, "$SYS/x", 4)
        self.req(1, "#", 2)
        self.assertNotIn(ip(2), self.s.receiver_set(b"$SYS/x"))
        self.assertIn(ip(2), self.s.receiver_set(b"sensors/t1"))
        out = self.req(2, "sensors/#", 1)
        self.assertEqual(sorted(out.topics), [b"sensors/#", b"sensors/t1", b"sensors/t2"])
        self.assertEqual(self.s.receiver_set(b"sensors/t1"), {ip(2)})

    def test_link_deletion_reroutes(self):
        # A ring s1 - s2 - s3 - s1; the short way from s3 to s2 is the direct link.
        t = m.Topology()
        for a, ap, b, bp in ((1, 1, 2, 1), (2, 2, 3, 1), (3, 2, 1, 2)):
            t.add_link(a, ap, b, bp)
            t.add_link(b, bp, a, ap)
        t.add_port(2, 9)
        t.add_port(3, 9)
        t.learn_host(mac(1), ip(1), 2, 9)
        t.learn_host(mac(4), ip(4), 3, 9)
        self.t = t
        self.req(1, "topic1", 1)
        self.req(0, "topic1", 4)
        self.assertEqual(sorted(self.ops()), sorted([
            ("group_add", 3, 1, [1]), ("flow_add", 3, 1, [1]),
            ("group_add", 2, 1, [9]), ("flow_add", 2, 1, [9])]))
        t.remove_link(3, 1, 2, 2)
        t.remove_link(2, 2, 3, 1)
        self.assertEqual(sorted(self.ops()), sorted([
            ("group_modify", 3, 1, [2]),
            ("group_add", 1, 1, [1]), ("flow_add", 1, 1, [1])]))

    def test_host_move_recomputes(self):
        self.req(1, "t", 1)
        self.req(0, "t", 4)
        self.ops()
        self.t.learn_host(mac(1), ip(1), 3, 32)  # h1 now beside h4
        self.assertEqual(sorted(self.ops()), sorted([
            ("flow_delete", 1, 1, [11]), ("group_delete", 1, 1, [11]),
            ("flow_delete", 2, 1, [22]), ("group_delete", 2, 1, [22]),
            ("group_modify", 3, 1, [32])]))

    def test_flow_expired_is_added_again_without_the_group(self):
        self.req(1, "t", 1)
        self.req(0, "t", 4)
        self.ops()
        self.r.flow_removed(2, 1)
        self.assertEqual(self.ops(), [("flow_add", 2, 1, [22])])
        self.assertEqual(self.ops(), [])

    def test_forgotten_switch_is_added_again(self):
        self.req(1, "t", 1)
        self.req(0, "t", 4)
        self.ops()
        self.r.forget_switch(3)
        self.assertEqual(self.ops(), [("group_add", 3, 1, [31]), ("flow_add", 3, 1, [31])])

    def test_scope_limits_the_diff(self):
        self.req(1, "a", 1)
        self.req(0, "a", 4)
        self.ops()
        desired = self.s.desired(self.t, topics=[b"b"])  # computed for another topic only
        self.assertEqual(self.r.diff(desired, scope=lambda k: k[1] in {2}), [])

    def test_flows_match_the_topic_address(self):
        for i in range(3):
            self.req(1, "t%d" % i, 1)
        self.req(0, "t2", 4)
        ops = self.r.diff(self.s.desired(self.t))
        self.assertEqual({(o.group, o.address, o.source) for o in ops},
                         {(3, "225.0.0.2", None)})


class PerTransmitter(unittest.TestCase):
    def test_a_group_per_transmitter_matching_its_source(self):
        t = reference_tree()
        s = m.Server(per_transmitter=True)
        r = m.Reconciler()
        s.handle_request(request(1, "t"), ip(1))
        s.handle_request(request(0, "t"), ip(4))
        s.handle_request(request(0, "t"), ip(2))
        ops = r.diff(s.desired(t))
        got = sorted((o.kind, o.dpid, o.group, sorted(o.buckets), o.source) for o in ops)
        g4, g2 = m.per_transmitter_group_id(0, 1), m.per_transmitter_group_id(0, 2)
        self.assertEqual((g4, g2), (0x101, 0x102))
        self.assertEqual(got, sorted([
            ("group_add", 3, g4, [31], ip(4)), ("flow_add", 3, g4, [31], ip(4)),
            ("group_add", 1, g4, [11], ip(4)), ("flow_add", 1, g4, [11], ip(4)),
            ("group_add", 2, g4, [22], ip(4)), ("flow_add", 2, g4, [22], ip(4)),
            ("group_add", 2, g2, [22], ip(2)), ("flow_add", 2, g2, [22], ip(2))]))
        self.assertEqual(s.group_ids_of(b"t"), {g4, g2})

    def test_on_a_ring_each_transmitter_uses_its_own_shortest_path(self):
        # Ring s1 - s2 - s3 - s4 - s1; h1 on s1 and h3 on s3 receive, h2 on s2 and h4 on s4
        # transmit. A shared union tree would give s1 and s3 two ring ports each and the ring a
        # loop; per transmitter each group is a tree.
        t = m.Topology()
        ring = [(1, 1, 2, 2), (2, 1, 3, 2), (3, 1, 4, 2), (4, 1, 1, 2)]
        for a, ap, b, bp in ring:
            t.add_link(a, ap, b, bp)
            t.add_link(b, bp, a, ap)
        for i in (1, 2, 3, 4):
            t.add_port(i, 9)
            t.learn_host(mac(i), ip(i), i, 9)
        s = m.Server(per_transmitter=True)
        for rx in (1, 3):
            s.handle_request(request(1, "t"), ip(rx))
        for tx in (2, 4):
            s.handle_request(request(0, "t"), ip(tx))
        d = s.desired(t)
        for group, _, _ in s.groups_of(b"t"):
            switches = {k[0] for k in d if k[1] == group}
            self.assertEqual(len(switches), 3, group)  # the transmitter's switch and two more
        self.assertEqual(d[(2, 0x101)].source, ip(2))


class ReconcilerForget(unittest.TestCase):
    def test_a_refused_group_is_added_again_by_the_next_diff(self):
        rec = m.Reconciler()
        want = {(1, 1): m.Entry(frozenset({2}), "225.0.0.0", None)}
        self.assertEqual([o.kind for o in rec.diff(want)],
                         [m.GROUP_ADD, m.FLOW_ADD])
        self.assertEqual(rec.diff(want), [])
        rec.forget(1, 1)
        self.assertEqual([o.kind for o in rec.diff(want)],
                         [m.GROUP_ADD, m.FLOW_ADD])


if __name__ == "__main__":
    unittest.main()
