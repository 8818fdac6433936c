#!/usr/bin/python3
"""Tests of pcapread on pcaps built here: whole, cut at every byte, and holding malformed frames.

Needs neither root nor Mininet: `python3 mininet/pcapread_test.py`.
"""

import os
import random
import socket
import struct
import tempfile
import unittest

import pcapread  # this script's directory is first on sys.path

A, B = "192.0.2.1", "192.0.2.4"  # documentation addresses: the reader takes any


def mqtt(first_byte, body):
    n, rl = len(body), bytearray()
    while True:
        b, n = n % 128, n // 128
        rl.append(b | (0x80 if n else 0))
        if not n:
            return bytes([first_byte]) + bytes(rl) + body


def utf8(s):
    return struct.pack(">H", len(s)) + s.encode()


PUBLISH = mqtt(0x30, utf8("e2e/order") + b"msg-000")
SUBSCRIBE = mqtt(0x82, b"\x00\x01" + utf8("e2e/a") + b"\x00" + utf8("e2e/b/#") + b"\x00")
UNSUBSCRIBE = mqtt(0xA2, b"\x00\x02" + utf8("e2e/a"))
UNSUBSCRIBE_PROTOTYPE = mqtt(0xB0, b"\x00\x01" + utf8("topic1"))


def udp_frame(src, dst, payload, sport=1883, dport=1883, frag=0):
    udp = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, frag, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + udp


def tcp_frame(src, dst):
    tcp = struct.pack(">HHIIBBHHH", 40000, 1883, 1, 0, 0x50, 0x02, 65535, 0, 0)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp


def pcap(frames, endian="<", nanos=False, linktype=1):
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 2048, linktype)
    for i, frame in enumerate(frames):
        frac = (250000000 if nanos else 250000) * (i % 4)
        out += struct.pack(endian + "IIII", 1000 + i, frac, len(frame), len(frame)) + frame
    return out


class PcapTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "t.pcap")

    def tearDown(self):
        self.dir.cleanup()

    def read(self, data):
        with open(self.path, "wb") as f:
            f.write(data)
        return pcapread.read_udp_datagrams(self.path)

    def frames(self):
        return [udp_frame(B, A, PUBLISH), tcp_frame(A, B),
                udp_frame(A, B, SUBSCRIBE), udp_frame(A, B, b"x", sport=53, dport=53),
                udp_frame(A, B, UNSUBSCRIBE)]

    def test_whole_file_in_every_byte_order_and_resolution(self):
        want = [(1000.0, B, A, PUBLISH), (1002.5, A, B, SUBSCRIBE), (1004.0, A, B, UNSUBSCRIBE)]
        for endian in "<>":
            for nanos in (False, True):
                self.assertEqual(self.read(pcap(self.frames(), endian, nanos)), want)

    def test_a_file_cut_anywhere_yields_the_records_before_the_cut(self):
        data = pcap(self.frames())
        whole = self.read(data)
        for cut in range(len(data)):
            got = self.read(data[:cut])
            self.assertEqual(got, whole[:len(got)], "cut at %d" % cut)
        self.assertEqual(self.read(data[:-1]), whole[:-1])

    def test_frames_cut_by_the_snap_length_are_skipped_or_kept_as_captured(self):
        frame = udp_frame(B, A, PUBLISH)
        for n in range(len(frame)):
            got = self.read(pcap([frame[:n]]))
            if n < 14 + 20 + 8:
                self.assertEqual(got, [], "frame of %d bytes" % n)
            else:
                self.assertEqual(got, [(1000.0, B, A, PUBLISH[:n - 42])])

    def test_malformed_frames_are_skipped(self):
        frame = udp_frame(B, A, PUBLISH)
        bad = [b"", b"\x00" * 13, frame[:12] + b"\x86\xdd" + frame[14:],  # IPv6 ethertype
               frame[:14] + b"\x65" + frame[15:],  # IP version 6 in an IPv4 frame
               frame[:14] + b"\x44" + frame[15:],  # header length 16
               frame[:14] + b"\x4f" + frame[15:],  # header length 60: no room for UDP
               udp_frame(B, A, PUBLISH, frag=0x0010),  # a later fragment
               frame[:38] + b"\x00\x04" + frame[40:]]  # UDP length below its header
        self.assertEqual(self.read(pcap(bad + [frame])), [(1000.0 + len(bad), B, A, PUBLISH)])
        rnd = random.Random(1)
        noise = [bytes(rnd.randrange(256) for _ in range(rnd.randrange(80))) for _ in range(300)]
        self.read(pcap(noise))  # no exception

    def test_a_record_longer_than_any_frame_ends_the_read(self):
        data = pcap([udp_frame(B, A, PUBLISH)])
        data += struct.pack("<IIII", 1, 0, 1 << 30, 1 << 30) + b"\x00" * 100
        self.assertEqual(len(self.read(data)), 1)

    def test_missing_or_headerless_files_hold_nothing(self):
        self.assertEqual(pcapread.read_udp_datagrams(os.path.join(self.dir.name, "none")), [])
        self.assertEqual(self.read(b""), [])
        self.assertEqual(self.read(pcap([])[:23]), [])

    def test_not_a_pcap_is_an_error(self):
        with self.assertRaises(ValueError):
            self.read(b"\x0a\x0d\x0d\x0a" + b"\x00" * 40)  # pcapng
        with self.assertRaises(ValueError):
            self.read(pcap([udp_frame(B, A, PUBLISH)], linktype=113))  # Linux cooked


class SummaryTest(unittest.TestCase):
    def test_whole_packets(self):
        s = pcapread.mqtt_packet_summary
        self.assertEqual(s(PUBLISH), ("PUBLISH", "e2e/order"))
        self.assertEqual(s(SUBSCRIBE), ("SUBSCRIBE", ["e2e/a", "e2e/b/#"]))
        self.assertEqual(s(UNSUBSCRIBE), ("UNSUBSCRIBE", ["e2e/a"]))
        self.assertEqual(s(UNSUBSCRIBE_PROTOTYPE), ("UNSUBSCRIBE", ["topic1"]))
        self.assertEqual(s(b"\xc0\x00"), ("TYPE12", None))
        long_topic = "t" * 200  # a two-byte remaining length
        self.assertEqual(s(mqtt(0x30, utf8(long_topic) + b"x")), ("PUBLISH", long_topic))

    def test_packets_cut_anywhere(self):
        s = pcapread.mqtt_packet_summary
        self.assertEqual(s(b""), ("TRUNCATED", None))
        self.assertEqual(s(b"\x30"), ("TRUNCATED", None))
        self.assertEqual(s(b"\x30\xff\xff\xff\xff\x01"), ("TRUNCATED", None))  # 5-byte length
        for n in range(2, len(PUBLISH)):
            self.assertEqual(s(PUBLISH[:n]), ("PUBLISH", "e2e/order" if n >= 13 else None), n)
        for n in range(2, len(SUBSCRIBE)):
            kind, filters = s(SUBSCRIBE[:n])
            self.assertEqual(kind, "SUBSCRIBE")
            self.assertEqual(filters, ["e2e/a", "e2e/b/#"][:len(filters)], n)
        for n in range(2, len(UNSUBSCRIBE)):
            self.assertEqual(s(UNSUBSCRIBE[:n])[0], "UNSUBSCRIBE")

    def test_random_bytes(self):
        rnd = random.Random(2)
        for _ in range(3000):
            payload = bytes(rnd.randrange(256) for _ in range(rnd.randrange(12)))
            kind, _ = pcapread.mqtt_packet_summary(payload)  # no exception
            self.assertIsInstance(kind, str)


class CountTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "t.pcap")

    def tearDown(self):
        self.dir.cleanup()

    def test_packets_and_datagrams_by_kind_and_name(self):
        data = mqtt(0xF0, b"MP\x01\x02" + bytes(24))  # the extension's DATA header
        other = mqtt(0x30, utf8("e2e/other"))
        frames = [udp_frame(B, A, data + PUBLISH + PUBLISH + other),  # a batch
                  udp_frame(B, A, data + PUBLISH), udp_frame(B, A, data),  # a sequence mark
                  udp_frame(A, B, SUBSCRIBE), udp_frame(A, B, UNSUBSCRIBE_PROTOTYPE),
                  udp_frame(A, B, PUBLISH), tcp_frame(A, B)]
        with open(self.path, "wb") as f:
            f.write(pcap(frames))
        packets, datagrams = pcapread.count_packets(self.path)
        self.assertEqual(packets, {(B, A, "EXT-DATA", None): 3, (B, A, "PUBLISH", "e2e/order"): 3,
                                   (B, A, "PUBLISH", "e2e/other"): 1,
                                   (A, B, "SUBSCRIBE", "e2e/a"): 1,
                                   (A, B, "SUBSCRIBE", "e2e/b/#"): 1,
                                   (A, B, "UNSUBSCRIBE", "topic1"): 1,
                                   (A, B, "PUBLISH", "e2e/order"): 1})
        self.assertEqual(datagrams[(B, A, "PUBLISH", "e2e/order")], 2)
        self.assertEqual(datagrams[(B, A, "EXT-DATA", None)], 3)
        self.assertEqual(datagrams[(A, B, "SUBSCRIBE", "e2e/a")], 1)
        self.assertEqual(pcapread.count_packets(os.path.join(self.dir.name, "none")),
                         ({}, {}))


if __name__ == "__main__":
    unittest.main()
