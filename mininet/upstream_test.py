#!/usr/bin/python3
"""Upstream mode (--upstream HOST[:PORT], docs/upstream.md) end to end in the reference Mininet
testbed: mqtt_proxy on h1 in front of a real Mosquitto broker on h4, with stock mosquitto_pub and
mosquitto_sub in MQTT 3.1.1 and 5.0 (-V mqttv311, -V mqttv5), Paho (python3-paho-mqtt) over TCP
and over WebSocket.

Every test starts its own Mosquitto on h4 (a configuration file written into the artifacts
directory: a plain listener on 1883, TLS listeners on 8883 and 8884, `allow_anonymous true`,
`persistence false`, `log_type all` into a log file of its own, which the test reads to see what
the broker was sent) and its own proxy on h1 (--log-level debug, anonymous clients), and stops
both by PID, then reads the counters the proxy logs at exit. Subscribers run on h2, publishers on
h3, all of them connecting to h1 unless a test says otherwise; a subscriber counts as subscribed
once the broker logged its SUBACK to it. What is asserted:

1. QoS 0, 1 and 2 in 3.1.1 and 5.0: a subscriber gets exactly what a publisher sent (the payloads,
   in order, at min(published, subscribed) QoS, 20 messages and an end marker per case; and one
   70000-byte message at QoS 1). The broker logged each client as connecting from h1's address,
   at the client's own protocol level (Mosquitto's p2 / p5), and received every PUBLISH: the
   broker, not the proxy, served them. The proxy's ready line names the upstream.
2. Retained: messages published retained through the proxy are stored by the broker (the later
   one replacing the earlier); a new subscriber through the proxy gets the last one with the
   retain flag, and so does one connected straight to h4.
3. Wills: a client that published through the proxy and disconnected cleanly leaves no will; a
   mosquitto_sub with --will-topic connected through the proxy and killed (SIGKILL, by PID: its
   kernel closes the socket, with no DISCONNECT) has its will published by the broker to a
   subscriber, and the broker never logged a DISCONNECT from it.
4. The acl_file plugin (--plugin, --plugin-opt acl_file=...): a QoS 1 PUBLISH outside the user's
   pattern gets PUBACK reason 0x87 in 5.0 (mosquitto_pub -d prints "RC:135") and a plain PUBACK in
   3.1.1, a QoS 0 one is dropped; neither reaches the broker (its log shows the client connected
   but no PUBLISH from it) nor a subscriber, while the allowed one after them does. A subscriber
   whose user may not read a topic does not get it (the broker sent it, and got a PUBACK for it
   from the proxy), while another subscriber does. mqtt_publish_refused counts the refusals.
5. The broker stopped (SIGTERM, by PID) under two connected Paho subscribers (3.1.1 and 5.0): the
   proxy closes both connections within 5 s; a new client then gets CONNACK 3 (3.1.1) or 0x88
   Server unavailable (5.0, "136"); the proxy is still running and logs no error. With the broker
   started again, clients work through the same proxy.
6. TLS to the broker (--upstream-tls, --upstream-cafile; a CA and certificates made with the
   openssl command line, tls.py): with the right CA, QoS 1 delivery works and the broker logged
   the clients on its TLS port; with another CA, or with the right CA and a certificate whose
   subjectAltName is not h4's address, the client is refused (Server unavailable), the broker
   logged the proxy's TCP connection but never its CONNECT, and the proxy logs "certificate
   verify failed".
7. WebSocket (mininet/web/paho_ws_client.py, ws://h1:8080/mqtt, QoS 1, 3.1.1 and 5.0): what Paho
   publishes over WebSocket through the proxy reaches a mosquitto_sub through the proxy over TCP,
   and what mosquitto_pub sends straight to the broker reaches the Paho subscriber.
8. --upstream with peers (-F, before or after it) or with the proxy's own credentials (-u, -p),
   and --upstream-tls without --upstream: the proxy exits non-zero with one line naming upstream
   mode (run outside Mininet, in a network namespace of its own, as plugins_test.py runs its bad
   options).
9. A broker that stops reading (docs/upstream.md, Backpressure): a raw-socket publisher on h3
   (bp_client.py, written into the artifacts: non-blocking, a write whenever its socket is
   writable) floods 30000 QoS 0 PUBLISHes of 1 KiB (a sequence number in each; at most 25 s)
   through the proxy while Mosquitto is stopped (SIGSTOP, by PID, after the CONNACK). 3 s into
   the flood the publisher is blocked (its byte count grew by less than 64 KiB in the next 3 s),
   it sent less than 8 MiB of the 31 MB (its kernel's send buffer included), and the proxy's
   VmRSS grew by less than 16 MiB. After SIGCONT the flood completes, the broker logged every
   PUBLISH and dropped none, and a subscriber connected straight to h4 (subscribed before the
   flood; `max_queued_messages 0`, so that Mosquitto itself drops no QoS 0 message for it) got
   every message, in order, intact; the proxy's VmRSS (sampled every 0.25 s) still grew by less
   than 16 MiB.
10. A client that stops reading: a raw-socket subscriber through the proxy on h2 that, once it
   has its SUBACK, never reads again, while a publisher connected straight to h4 floods 50000
   QoS 0 PUBLISHes of 1 KiB (52 MB; the broker, with `max_queued_messages 0`, queues them for
   the subscriber). The proxy's VmRSS (sampled every 0.25 s) grows by less than 16 MiB, its
   connection to the broker holds unread bytes (ss on h1: the proxy stopped reading, the kernel's
   window closed), and meanwhile another subscriber through the proxy gets a QoS 1 message
   published through the proxy to another topic. The stalled subscriber killed (by PID), the
   broker logs its connection closed, the proxy still runs and logs no error.
   Tests 9 and 10 print what they measured (VmRSS before and at the peak, bytes sent, messages
   delivered, the sockets' queues) to stderr and into backpressure-NN.txt and ss-NN.txt.

In every test: mqtt_connects counts exactly the clients the broker accepted through the proxy,
mqtt_protocol_errors stays 0, and mqtt_connects_refused counts the refusals. tcpdump records
h1-eth0 (tcp 1883, 8080, 8883, 8884) for the whole run.

Exit status 77 (ctest: skipped) when not root, or when Mininet, Open vSwitch, Mosquitto (the broker
or its clients), openssl or python3-paho-mqtt are missing. On failure the proxies' and brokers'
logs, their configuration files, the certificates and the pcap stay in the artifacts directory.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest

import procs  # this script's directory is first on sys.path
import tls
from procs import Lines, wait_for

try:
    import testbed
except ImportError:  # Mininet imports only in Debian's /usr/bin/python3: main() skips
    testbed = None
else:
    H1, H2, H3, H4 = (testbed.host_ip(i) for i in (1, 2, 3, 4))

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PAHO = os.path.join(HERE, "clients", "paho_client.py")
PAHO_WS = os.path.join(HERE, "web", "paho_ws_client.py")
MOSQUITTO = "/usr/sbin/mosquitto"
ARGS = None

VERSIONS = ("mqttv311", "mqttv5")
PLAIN_PORT = 1883  # Mosquitto's plain listener on h4 (and the proxy's -t on h1)
TLS_PORT = 8883  # Mosquitto's TLS listener: a certificate for h4's address
WRONG_NAME_PORT = 8884  # a TLS listener whose certificate (same CA) names h3's address instead
WS_PORT, WS_PATH = 8080, "/mqtt"
CAPTURE_BPF = "tcp port 1883 or tcp port 8080 or tcp port 8883 or tcp port 8884"

NOT_AUTHORIZED = 0x87
NO_MATCHING_SUBSCRIBERS = 0x10
# What a client gets when the broker cannot be reached before its CONNACK (docs/upstream.md).
SERVER_UNAVAILABLE = {"mqttv311": 3, "mqttv5": 0x88}

# Mosquitto's acl_file format (docs/plugins.md). alice and bob have no section: the pattern lets
# each write under up/acl/<username>/. eve may read alice's topics only.
ACL = """\
user admin
topic readwrite #

user eve
topic read up/acl/alice/#

pattern write up/acl/%u/#
"""

PUBACK = re.compile(r"received PUBACK \(Mid: \d+, RC:(\d+)\)")
PUBCOMP = re.compile(r"received PUBCOMP \(Mid: \d+, RC:(\d+)\)")
CONNACK = re.compile(r"received CONNACK \((\d+)\)")
# Mosquitto's log (log_type all), after the "<unix time>: " of each line.
NEW_CONNECTION = re.compile(r"^\d+: New connection from ([0-9.]+):(\d+) on port (\d+)\.$", re.M)
CLIENT_CONNECTED = re.compile(r"^\d+: New client connected from ([0-9.]+):(\d+) as (\S+) "
                              r"\(p(\d+), ", re.M)
ERROR_LINE = re.compile(r"^\S+ ERROR ", re.M)

# -- the backpressure tests (9 and 10) ---------------------------------------------------------

BP_TOPIC, BP_ALIVE_TOPIC = "up/bp/flood", "up/bp/alive"
BP_SIZE = 1024  # payload bytes of a flood message
BP_RSS_LIMIT_KIB = 16 * 1024  # growth of the proxy's VmRSS allowed during a flood
BP_STOPPED_LIMIT = 8 * 1024 * 1024  # what the proxy may take from a client while the broker sleeps
BP_BLOCKED_GROWTH = 64 * 1024  # what a blocked client may still get rid of in 3 s

# Raw-socket MQTT 3.1.1 clients, written into the artifacts directory as bp_client.py and run in a
# host: as aggressive as a client can be (non-blocking, a write whenever the socket is writable).
BP_CLIENT = r'''"""Raw-socket MQTT 3.1.1 clients for mininet/upstream_test.py's backpressure tests.

pub HOST PORT ID TOPIC COUNT SIZE SECONDS: CONNECT, CONNACK ("CONNACK rc"), then waits for "go" on
  stdin and floods COUNT pre-encoded QoS 0 PUBLISHes (SIZE-byte payloads starting with an 8-digit
  sequence number) as fast as the socket takes them, for at most SECONDS (then up to the end of
  the packet under way). Every 0.1 s: "SENT seconds bytes outq messages" (bytes: what send() took;
  outq: what of it the kernel still holds, unsent or unacknowledged; messages: whole packets in
  bytes). At the end "DONE bytes messages count|time", DISCONNECT, "FLUSHED outq" once the kernel
  holds nothing (or 60 s passed), "CLOSED".
sub HOST PORT ID TOPIC read|stall SIZE: CONNECT, SUBSCRIBE QoS 0, "SUBACK granted". stall: prints
  "STALLED" and never reads again (killed by PID). read: checks each PUBLISH (sequence numbers from
  0 on, in order, payloads as pub made them), every 0.2 s while it changes "RECV count last
  errors", "GAP expected got" or "BAD seq" for the first few errors, "EOF count" at the end.
"""
import fcntl
import select
import socket
import struct
import sys
import termios
import time


def varint(n):
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def utf8(text):
    b = text.encode()
    return struct.pack("!H", len(b)) + b


def make_payload(seq, size):
    return ((b"%08d|" % seq) + (b"%08d." % seq) * (size // 9 + 1))[:size]


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("the connection closed")
        buf += chunk
    return buf


def read_packet(s):
    first = recv_exact(s, 1)[0]
    length, shift = 0, 0
    while True:
        b = recv_exact(s, 1)[0]
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return first, recv_exact(s, length)


def say(*words):
    print(*words, flush=True)


def connect(host, port, client_id):
    s = socket.create_connection((host, int(port)), timeout=15)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # Clean session, keepalive 0: nobody times the idle subscriber out.
    s.sendall(packet(0x10, utf8("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 0)
                     + utf8(client_id)))
    first, body = read_packet(s)
    if first != 0x20 or len(body) != 2:
        say("UNEXPECTED", hex(first), body.hex())
        sys.exit(1)
    say("CONNACK", body[1])
    if body[1] != 0:
        sys.exit(1)
    return s


def outq(s):
    return struct.unpack("i", fcntl.ioctl(s.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


def pub(host, port, client_id, topic, count, size, seconds):
    count, size, seconds = int(count), int(size), float(seconds)
    data = b"".join(packet(0x30, utf8(topic) + make_payload(i, size)) for i in range(count))
    each = len(data) // count
    s = connect(host, port, client_id)
    if sys.stdin.readline().strip() != "go":
        sys.exit(1)
    s.setblocking(False)
    view = memoryview(data)
    off = 0
    start = time.monotonic()
    next_report = start
    reason = "count"

    def report():
        say("SENT %.3f %d %d %d" % (time.monotonic() - start, off, outq(s), off // each))

    while off < len(data):
        now = time.monotonic()
        if now >= next_report:
            report()
            next_report = now + 0.1
        late = now - start >= seconds
        if late and (off % each == 0 or now - start >= seconds + 10):
            reason = "time"
            break
        end = min(len(data), off + 256 * 1024)
        if late:
            end = min(end, (off // each + 1) * each)  # the packet under way, no more
        try:
            off += s.send(view[off:end])
        except BlockingIOError:
            select.select([], [s], [], 0.05)
    report()
    say("DONE %d %d %s" % (off, off // each, reason))
    s.setblocking(True)
    s.settimeout(10)
    if off % each == 0:
        s.sendall(b"\xe0\x00")
    deadline = time.monotonic() + 60
    while outq(s) and time.monotonic() < deadline:
        time.sleep(0.05)
    say("FLUSHED %d" % outq(s))
    s.shutdown(socket.SHUT_WR)
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass
    say("CLOSED")


def sub(host, port, client_id, topic, mode, size):
    size = int(size)
    s = connect(host, port, client_id)
    s.sendall(packet(0x82, struct.pack("!H", 1) + utf8(topic) + b"\x00"))
    first, body = read_packet(s)
    if first != 0x90:
        say("UNEXPECTED", hex(first), body.hex())
        sys.exit(1)
    say("SUBACK", body[-1])
    if mode == "stall":
        say("STALLED")
        time.sleep(3600)
        return
    s.settimeout(None)
    buf = bytearray()
    count, last, errors, reported = 0, -1, 0, None
    next_report = time.monotonic()
    while True:
        r, _, _ = select.select([s], [], [], 0.2)
        if r:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
            pos = 0
            while True:
                if len(buf) - pos < 2:
                    break
                length, shift, i = 0, 0, pos + 1
                while i < len(buf):
                    b = buf[i]
                    length |= (b & 0x7F) << shift
                    shift += 7
                    i += 1
                    if not b & 0x80:
                        break
                else:
                    break
                if len(buf) - i < length:
                    break
                first, body = buf[pos], bytes(buf[i:i + length])
                pos = i + length
                if first & 0xF0 != 0x30:
                    continue
                n = struct.unpack("!H", body[:2])[0]
                rest = body[2 + n:]
                if (first >> 1) & 3:
                    rest = rest[2:]
                seq = int(rest[:8])
                if seq != last + 1:
                    errors += 1
                    if errors <= 5:
                        say("GAP %d %d" % (last + 1, seq))
                elif rest != make_payload(seq, size):
                    errors += 1
                    if errors <= 5:
                        say("BAD %d" % seq)
                count += 1
                last = seq
            del buf[:pos]
        now = time.monotonic()
        if now >= next_report:
            next_report = now + 0.2
            if reported != (count, last, errors):
                reported = (count, last, errors)
                say("RECV %d %d %d" % reported)
    say("RECV %d %d %d" % (count, last, errors))
    say("EOF %d" % count)


if __name__ == "__main__":
    {"pub": pub, "sub": sub}[sys.argv[1]](*sys.argv[2:])
'''


def vm_rss_kib(pid):
    """VmRSS of a process, in KiB (/proc is the same in every Mininet host)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """Samples a process's VmRSS every `interval` seconds in the background; (seconds since the
    start, KiB) each."""

    def __init__(self, pid, interval=0.25):
        self.pid, self.interval = pid, interval
        self.start = time.monotonic()
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            try:
                self.samples.append((time.monotonic() - self.start, vm_rss_kib(self.pid)))
            except (FileNotFoundError, ProcessLookupError):
                return
            if self._stop.wait(self.interval):
                return

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        return self

    def peak(self, since=0.0, until=float("inf")):
        values = [kib for t, kib in self.samples if since <= t <= until]
        return max(values) if values else 0


class BpClient:
    """A bp_client.py process; its output lines read in the background: `latest[WORD]` is the last
    line starting with WORD, split."""

    def __init__(self, proc):
        self.proc = proc
        self.lines = []
        self.latest = {}
        self.ended = False
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                words = line.split()
                if words:
                    self.latest[words[0]] = words
                self._cond.notify_all()
        with self._cond:
            self.ended = True
            self._cond.notify_all()

    def wait(self, predicate, timeout):
        """Whether predicate(self) came true within `timeout` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self) or self.ended, timeout) \
                and predicate(self)

    def wait_word(self, word, timeout):
        """The words of the first line starting with `word`, or None after `timeout` seconds."""
        if self.wait(lambda c: word in c.latest, timeout):
            return self.latest[word]
        return None

    def sent(self):
        """(seconds, bytes, outq, messages) of the publisher's last SENT line."""
        words = self.latest.get("SENT")
        return (float(words[1]), int(words[2]), int(words[3]), int(words[4])) if words else None

    def recv(self):
        """(count, last sequence number, errors) of the subscriber's last RECV line."""
        words = self.latest.get("RECV")
        return tuple(int(w) for w in words[1:4]) if words else (0, -1, 0)

    def command(self, text):
        self.proc.stdin.write((text + "\n").encode())
        self.proc.stdin.flush()


def short(version):
    return "5" if version == "mqttv5" else "4"


def payload(n, tag):
    """`n` printable bytes starting with `tag`."""
    body = "".join("%s-%06d|" % (tag, i) for i in range(n // 8 + 1))
    return body[:n]


def broker_config(log_path, certs, wrong_name, extra=()):
    """Mosquitto's configuration: the plain listener, the TLS one with the server certificate for
    h4 and the one with `wrong_name` ((certificate, key) for h3's address, from the same CA);
    `extra`: more lines for the global section."""
    server_crt = os.path.join(certs.dir, "server.crt")
    server_key = os.path.join(certs.dir, "server.key")
    return "\n".join([
        "# Written by mininet/upstream_test.py.",
        # As root, Mosquitto 2 would switch to the user mosquitto, who cannot write the artifacts.
        "user root",
        "persistence false",
        "log_dest file " + log_path,
        "log_type all",
        "connection_messages true",
        "allow_anonymous true",
    ] + list(extra) + [
        "",
        "listener %d" % PLAIN_PORT,
        "",
        "listener %d" % TLS_PORT,
        "cafile " + certs.ca_crt,
        "certfile " + server_crt,
        "keyfile " + server_key,
        "",
        "listener %d" % WRONG_NAME_PORT,
        "cafile " + certs.ca_crt,
        "certfile " + wrong_name[0],
        "keyfile " + wrong_name[1],
        ""])


class Broker:
    """Mosquitto in a testbed host: its configuration file NAME.conf, its log NAME.log (log_dest
    file) and its own output NAME.out in the artifacts directory; stopped by PID."""

    def __init__(self, tb, host_name, name, certs, wrong_name, timeout=10, extra_config=()):
        self.tb = tb
        self.host_name = host_name
        self.conf = os.path.join(tb.artifacts, name + ".conf")
        self.log_path = os.path.join(tb.artifacts, name + ".log")
        with open(self.conf, "w") as f:
            f.write(broker_config(self.log_path, certs, wrong_name, extra_config))
        self._out = open(os.path.join(tb.artifacts, name + ".out"), "wb")
        self.proc = tb.popen(host_name, [MOSQUITTO, "-c", self.conf], stdout=self._out,
                             stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        ports = (PLAIN_PORT, TLS_PORT, WRONG_NAME_PORT)
        if not wait_for(lambda: self.listening(ports) or self.proc.poll() is not None, timeout,
                        interval=0.1) or self.proc.poll() is not None:
            self.stop()
            with open(self._out.name, errors="replace") as f:
                out = f.read()
            raise RuntimeError("mosquitto did not start on %s (exit %s): %s\n%s"
                               % (host_name, self.proc.returncode, out, self.log()))

    def listening(self, ports):
        rc, out, _ = self.tb.run(self.host_name, ["ss", "-Hltn"], timeout=10)
        if rc != 0:
            return False
        local = {line.split()[3].rsplit(":", 1)[-1] for line in out.splitlines()
                 if len(line.split()) >= 4}
        return all(str(p) in local for p in ports)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, count=1, timeout=10):
        """Whether the log has `count` matches of the regular expression `pattern` (re.M) within
        `timeout` seconds."""
        rx = re.compile(pattern, re.M)
        return wait_for(lambda: len(rx.findall(self.log())) >= count, timeout)

    def clients(self):
        """{client id: (address, port, protocol level, listener port)} for every client the broker
        accepted (the last connection of each id)."""
        log = self.log()
        listener = {(a, int(p)): int(lp) for a, p, lp in NEW_CONNECTION.findall(log)}
        return {cid: (a, int(p), int(level), listener.get((a, int(p))))
                for a, p, cid, level in CLIENT_CONNECTED.findall(log)}

    def running(self):
        return self.proc.poll() is None

    def stop(self, timeout=10):
        rc = procs.terminate(self.proc, timeout)
        if not self._out.closed:
            self._out.close()
        return rc


class Upstream(testbed.ProxyChecks if testbed else object, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = tls.Certificates(os.path.join(ARGS.artifacts, "certs"))
        cls.certs.server(ips=[H4], dns=(), cn="mosquitto on h4")
        # Same CA, but a subjectAltName of h3's address: h4 presenting it is not h4.
        cls.wrong_name = cls.certs._sign(  # pylint: disable=protected-access
            "wrong-name", "mosquitto with h3's name",
            ["subjectAltName=IP:%s" % H3, "extendedKeyUsage=serverAuth",
             "keyUsage=critical,digitalSignature"])
        cls.other_ca = tls.Certificates(os.path.join(ARGS.artifacts, "other-ca"),
                                        ca_name="another test CA")
        cls.acl = os.path.join(ARGS.artifacts, "acl")
        with open(cls.acl, "w") as f:
            f.write(ACL)
        cls.big = os.path.join(ARGS.artifacts, "big.bin")
        with open(cls.big, "w") as f:
            f.write(payload(70000, "big"))
        cls.tb = testbed.Testbed(ARGS.artifacts, proxy_binary=ARGS.proxy)
        cls.tb.start()
        try:
            cap = procs.Capture(cls.tb.host("h1"), "h1-eth0",
                                os.path.join(ARGS.artifacts, "h1.pcap"), bpf=CAPTURE_BPF)
            cls.tb.captures.append(cap)
        except BaseException:
            cls.tb.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.tb.stop()

    # -- the broker and the proxy ----------------------------------------------------------------

    def tag(self):
        return self._testMethodName.split("_")[1]

    def start_broker(self, suffix="", extra_config=()):
        broker = Broker(self.tb, "h4", "mosquitto-%s%s" % (self.tag(), suffix), self.certs,
                        self.wrong_name, extra_config=extra_config)
        self.addCleanup(broker.stop)
        return broker

    def start_proxy(self, port=PLAIN_PORT, upstream_tls=False, cafile=None, plugins=(),
                    suffix=""):
        """The proxy for this test on h1, in front of h4:`port`; `plugins`: (path, [NAME=VALUE])."""
        extra = ["--upstream", "%s:%d" % (H4, port), "--log-level", "debug"]
        if upstream_tls:
            extra.append("--upstream-tls")
        if cafile:
            extra += ["--upstream-cafile", cafile]
        for path, options in plugins:
            extra += ["--plugin", path]
            for o in options:
                extra += ["--plugin-opt", o]
        proxy = self.tb.start_proxy("h1", extra=extra, auth=False,
                                    log_suffix="-%s%s" % (self.tag(), suffix))
        self.addCleanup(self.stop_proxy, proxy)
        ready = [line for line in proxy.log().splitlines() if " ready: " in line]
        self.assertTrue(ready and "upstream %s:%d" % (H4, port) in ready[-1],
                        "the ready line does not name the upstream %s:%d: %s"
                        % (H4, port, ready))
        return proxy

    def no_error_lines(self, proxy):
        """No line at error level (warnings allowed: a broker that went away may be one)."""
        self.assertEqual(ERROR_LINE.findall(proxy.log()), [],
                         "errors in %s:\n%s" % (proxy.log_path, "\n".join(
                             line for line in proxy.log().splitlines()
                             if ERROR_LINE.match(line))))

    # -- clients -----------------------------------------------------------------------------------

    @staticmethod
    def _end(p):
        if p.poll() is None:
            p.kill()
            p.wait()

    @staticmethod
    def client_args(version, server, user):
        args = ["-h", server, "-p", str(PLAIN_PORT), "-V", version]
        if user:
            args += ["-u", user]
        return args

    def subscribe(self, broker, version, topics, client_id, count, qos=0, host="h2", server=None,
                  fmt="%t %q %p", user=None, extra=()):
        """mosquitto_sub for `count` messages (then exits 0; -W 20), printed as `fmt`, once the
        broker logged its SUBACK to it."""
        args = ["mosquitto_sub", "-C", str(count), "-W", "20", "-i", client_id, "-F", fmt,
                "-q", str(qos)]
        for t in topics:
            args += ["-t", t]
        p = self.tb.popen(host, args + self.client_args(version, server or H1, user)
                          + list(extra))
        self.addCleanup(self._end, p)
        needle = r"^\d+: Sending SUBACK to %s$" % re.escape(client_id)
        ok = wait_for(lambda: re.search(needle, broker.log(), re.M) or p.poll() is not None, 15)
        if not re.search(needle, broker.log(), re.M):
            if p.poll() is not None:
                self.fail("mosquitto_sub %s ended (%s): %s" % (client_id, p.returncode,
                                                               p.communicate()))
            self.fail("the broker sent %s no SUBACK (%s):\n%s" % (client_id, ok,
                                                                 broker.log()[-3000:]))
        return p

    def received(self, sub, timeout=30):
        """What a mosquitto_sub printed, once it got its -C count (exit 0; 27 is -W's timeout)."""
        try:
            out, err = sub.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail("mosquitto_sub still runs after %s s" % timeout)
        text = out.decode(errors="replace")
        self.assertEqual(sub.returncode, 0, "mosquitto_sub exited %s (27: timed out before its "
                         "count); it printed %r, %r" % (sub.returncode, text[-2000:],
                                                        err.decode(errors="replace")))
        return text.splitlines()

    def publish(self, version, topic, client_id, message=None, lines=None, payload_file=None,
                qos=1, retain=False, host="h3", server=None, user=None, extra=(),
                expect_rc=0):
        """mosquitto_pub -d from `host` (to h1 by default); checks each QoS 1 PUBACK's reason is
        `expect_rc` (5.0; 0 in 3.1.1, whose PUBACK has none) and each QoS 2 flow completed.
        Returns its output."""
        args = ["mosquitto_pub", "-d", "-q", str(qos), "-t", topic, "-i", client_id]
        input_text = None
        if lines is not None:
            args.append("-l")
            input_text = "".join(line + "\n" for line in lines)
        elif payload_file:
            args += ["-f", payload_file]
        else:
            args += ["-m", message]
        if retain:
            args.append("-r")
        args += self.client_args(version, server or H1, user) + list(extra)
        rc, out, err = self.tb.run(host, args, timeout=30, input_text=input_text)
        output = out + err
        self.assertIsNotNone(rc, "mosquitto_pub %s still ran after 30 s:\n%s"
                             % (client_id, output[-3000:]))
        self.assertEqual(CONNACK.findall(output), ["0"], "CONNACK of %s:\n%s"
                         % (client_id, output[-3000:]))
        n = len(lines) if lines is not None else 1
        want = expect_rc if version == "mqttv5" else 0
        if qos == 1:
            codes = [int(c) for c in PUBACK.findall(output)]
            # A 5.0 broker says 0x10 (No matching subscribers) where nobody subscribed: a success.
            accepted = ((0, NO_MATCHING_SUBSCRIBERS) if version == "mqttv5" and want == 0
                        else (want,))
            self.assertTrue(len(codes) == n and all(c in accepted for c in codes),
                            "PUBACKs of %s to %s (want %d x %s):\n%s"
                            % (client_id, topic, n, accepted, output[-3000:]))
        elif qos == 2:
            self.assertEqual(len(PUBCOMP.findall(output)), n, "PUBCOMPs of %s:\n%s"
                             % (client_id, output[-3000:]))
        if want >= 0x80:
            self.assertIn("Warning: Publish 1 failed", output)
        else:
            self.assertEqual(rc, 0, output[-3000:])
            self.assertNotIn("failed", output)
        return output

    def refused(self, version, client_id, host="h3"):
        """A mosquitto_pub through the proxy that must get CONNACK Server unavailable and fail."""
        args = ["mosquitto_pub", "-d", "-q", "1", "-t", "up/refused", "-m", "x", "-i", client_id]
        rc, out, err = self.tb.run(host, args + self.client_args(version, H1, None), timeout=20)
        output = out + err
        self.assertIsNotNone(rc, "mosquitto_pub %s still ran after 20 s:\n%s" % (client_id, output))
        self.assertEqual(CONNACK.findall(output), [str(SERVER_UNAVAILABLE[version])],
                         "CONNACK of %s (want %d):\n%s" % (client_id, SERVER_UNAVAILABLE[version],
                                                           output))
        self.assertNotEqual(rc, 0, output)
        self.assertNotIn("sending PUBLISH", output)
        return output

    def paho(self, version, client_id, host="h2", server=None):
        """mininet/clients/paho_client.py through the proxy (or to `server`), connected;
        (process, lines, command)."""
        p = self.tb.popen(host, ["/usr/bin/python3", PAHO, "--host", server or H1, "--id",
                                 client_id, "--version", "5" if version == "mqttv5" else "311",
                                 "--show-qos"], stdin=subprocess.PIPE)
        self.addCleanup(self._end, p)
        lines = Lines(p.stdout)

        def command(c):
            p.stdin.write((c + "\n").encode())
            p.stdin.flush()

        self.assertEqual(lines.next(15), "CONNACK 0", "Paho %s did not connect" % client_id)
        return p, lines, command

    def paho_ws(self, version, client_id, host="h3"):
        """mininet/web/paho_ws_client.py to ws://h1:8080/mqtt, connected; (process, lines,
        command)."""
        p = self.tb.popen(host, ["/usr/bin/python3", PAHO_WS, "--host", H1, "--port",
                                 str(WS_PORT), "--path", WS_PATH, "--id", client_id, "--version",
                                 "5" if version == "mqttv5" else "311"], stdin=subprocess.PIPE)
        self.addCleanup(self._end, p)
        lines = Lines(p.stdout)

        def command(c):
            p.stdin.write((c + "\n").encode())
            p.stdin.flush()

        self.assertEqual(lines.next(15), "CONNACK 0", "Paho over WebSocket to %s:%d%s did not "
                         "connect" % (H1, WS_PORT, WS_PATH))
        return p, lines, command

    # -- what the broker saw -----------------------------------------------------------------------

    def assert_via_proxy(self, broker, client_ids, versions=None, listener=PLAIN_PORT):
        """Each of `client_ids` connected to the broker from h1's address (on `listener`), at the
        protocol level of its version (versions: client id -> mqttv311/mqttv5)."""
        clients = broker.clients()
        for cid in client_ids:
            self.assertIn(cid, clients, "the broker never accepted %s:\n%s"
                          % (cid, broker.log()[-3000:]))
            address, _, level, port = clients[cid]
            self.assertEqual(address, H1, "%s reached the broker from %s, not from the proxy"
                             % (cid, address))
            self.assertEqual(port, listener, "%s reached the broker on port %s" % (cid, port))
            if versions and cid in versions:
                # Mosquitto's numbers (mosq_p_mqtt311 = 2, mosq_p_mqtt5 = 5), not CONNECT's.
                self.assertEqual(level, 5 if versions[cid] == "mqttv5" else 2,
                                 "%s reached the broker at another protocol level" % cid)

    @staticmethod
    def published_by(broker, client_id):
        """The PUBLISH lines the broker logged as received from `client_id`."""
        return re.findall(r"^\d+: Received PUBLISH from %s \((.*)\)$" % re.escape(client_id),
                          broker.log(), re.M)

    def assert_counters(self, counters, connects, refused=0, publish_refused=0):
        self.assertEqual(counters.get("mqtt_connects", 0), connects, counters)
        if refused is not None:
            self.assertEqual(counters.get("mqtt_connects_refused", 0), refused, counters)
        self.assertEqual(counters.get("mqtt_publish_refused", 0), publish_refused, counters)
        self.assertEqual(counters.get("mqtt_subscribe_refused", 0), 0, counters)
        self.assertEqual(counters.get("mqtt_protocol_errors", 0), 0, counters)

    def finish(self, proxy, broker, ids, strict=True, via=None, **expected):
        """The clients `ids` were served through the proxy (assert_via_proxy, with `via`), it
        logged no error (strict: no warning either), and its counters at exit are `expected`
        (assert_counters). Returns them."""
        self.assert_via_proxy(broker, ids, **(via or {}))
        (self.no_errors if strict else self.no_error_lines)(proxy)
        counters = self.stop_and_count(proxy)
        self.assert_counters(counters, **expected)
        return counters

    # -- tests -------------------------------------------------------------------------------------

    def test_01_qos_0_1_2_in_311_and_5_served_by_the_broker(self):
        broker = self.start_broker()
        proxy = self.start_proxy()
        versions = {}
        for version in VERSIONS:
            v = short(version)
            for qos in (0, 1, 2):
                with self.subTest(version=version, qos=qos):
                    topic = "up/qos/v%s/q%d" % (v, qos)
                    sub_id, pub_id = "q-sub-%s-%d" % (v, qos), "q-pub-%s-%d" % (v, qos)
                    versions.update({sub_id: version, pub_id: version})
                    sent = ["v%s-q%d-%03d" % (v, qos, i) for i in range(20)] + ["end"]
                    # Subscribed at QoS 2, published at `qos`: delivered at `qos`.
                    sub = self.subscribe(broker, version, [topic], sub_id, len(sent), qos=2)
                    self.publish(version, topic, pub_id, lines=sent, qos=qos)
                    self.assertEqual(self.received(sub),
                                     ["%s %d %s" % (topic, qos, m) for m in sent])
                    self.assertEqual(len(self.published_by(broker, pub_id)), len(sent),
                                     broker.log()[-3000:])
            with self.subTest(version=version, size=70000):
                topic = "up/qos/v%s/big" % v
                sub_id, pub_id = "q-big-sub-" + v, "q-big-pub-" + v
                versions.update({sub_id: version, pub_id: version})
                sub = self.subscribe(broker, version, [topic], sub_id, 1, qos=1)
                self.publish(version, topic, pub_id, payload_file=self.big, qos=1)
                got = self.received(sub)
                with open(self.big) as f:
                    want = "%s 1 %s" % (topic, f.read())
                self.assertEqual(len(got), 1, [line[:100] for line in got])
                self.assertTrue(got[0] == want, "the 70000-byte message arrived as %d bytes"
                                % len(got[0]))
        self.finish(proxy, broker, sorted(versions), via={"versions": versions},
                    connects=len(versions))

    def test_02_retained_messages_are_the_brokers(self):
        broker = self.start_broker()
        proxy = self.start_proxy()
        ids = []
        for version in VERSIONS:
            with self.subTest(version=version):
                v = short(version)
                topic = "up/retained/v" + v
                self.publish(version, topic, "r-old-" + v, "old-v" + v, qos=1, retain=True)
                self.publish(version, topic, "r-new-" + v, "kept-v" + v, qos=1, retain=True)
                for cid in ("r-old-" + v, "r-new-" + v):
                    self.assertEqual(len(re.findall(r"^d0, q1, r1, m\d+, '%s'" % re.escape(topic),
                                                    "\n".join(self.published_by(broker, cid)),
                                                    re.M)), 1, broker.log()[-3000:])
                # Subscribed after: the broker's stored message, with the retain flag.
                sub = self.subscribe(broker, version, [topic], "r-sub-" + v, 1, qos=1,
                                     fmt="%r %t %p")
                self.assertEqual(self.received(sub), ["1 %s kept-v%s" % (topic, v)])
                # Straight to the broker, not through the proxy: the same.
                direct = self.subscribe(broker, version, [topic], "r-direct-" + v, 1, qos=1,
                                        fmt="%r %t %p", server=H4)
                self.assertEqual(self.received(direct), ["1 %s kept-v%s" % (topic, v)])
                ids += ["r-old-" + v, "r-new-" + v, "r-sub-" + v]
                self.assertEqual(broker.clients()["r-direct-" + v][0], H2)
        self.finish(proxy, broker, ids, connects=len(ids))

    def test_03_a_killed_clients_will_is_published_by_the_broker(self):
        broker = self.start_broker()
        proxy = self.start_proxy()
        ids = []
        for version in VERSIONS:
            with self.subTest(version=version):
                v = short(version)
                will_topic = "up/will/v" + v
                watcher = self.subscribe(broker, version, [will_topic], "w-watch-" + v, 1, qos=1,
                                         fmt="%t %p")
                # A clean DISCONNECT: the broker discards this will.
                will = ["--will-topic", will_topic, "--will-qos", "1"]
                self.publish(version, "up/will/other", "w-clean-" + v, "x", qos=1,
                             extra=will + ["--will-payload", "clean-v" + v])
                self.assertTrue(broker.wait_log(r"^\d+: Received DISCONNECT from w-clean-%s$" % v),
                                broker.log()[-3000:])
                # A client killed: its kernel closes the socket (a FIN), and no DISCONNECT.
                dying = self.subscribe(broker, version, ["up/will/none"], "w-dying-" + v, 1,
                                       host="h3", extra=will + ["--will-payload", "gone-v" + v])
                self.assertIn("Will message specified", broker.log())
                dying.kill()
                dying.wait(5)
                self.assertEqual(self.received(watcher), ["%s gone-v%s" % (will_topic, v)])
                self.assertNotRegex(broker.log(), r"Received DISCONNECT from w-dying-%s\n" % v)
                self.assertTrue(broker.wait_log(r"^\d+: Client w-dying-%s closed its connection"
                                                % v), broker.log()[-3000:])
                ids += ["w-watch-" + v, "w-clean-" + v, "w-dying-" + v]
        self.finish(proxy, broker, ids, connects=len(ids))

    def test_04_acl_file_refusals_never_reach_the_broker(self):
        broker = self.start_broker()
        proxy = self.start_proxy(plugins=[(ARGS.acl_plugin, ["acl_file=" + self.acl])])
        self.assertRegex(proxy.log(), r"plugin acl_file loaded from %s with 1 option\(s\)"
                         % re.escape(ARGS.acl_plugin))
        ids = []
        for version in VERSIONS:
            with self.subTest(version=version):
                v = short(version)
                # Writes: alice may write up/acl/alice/# only.
                sub = self.subscribe(broker, version, ["up/acl/#"], "a-admin-" + v, 1, qos=1,
                                     user="admin")
                self.publish(version, "up/acl/bob/q0", "a-bad0-" + v, "forged-q0", qos=0,
                             user="alice")
                self.publish(version, "up/acl/bob/q1", "a-bad1-" + v, "forged-q1", qos=1,
                             user="alice", expect_rc=NOT_AUTHORIZED)
                self.publish(version, "up/acl/alice/t", "a-ok-" + v, "own", qos=1, user="alice")
                # The refused messages would have come first.
                self.assertEqual(self.received(sub), ["up/acl/alice/t 1 own"])
                for cid in ("a-bad0-" + v, "a-bad1-" + v):
                    self.assertEqual(self.published_by(broker, cid), [],
                                     "the broker received %s's refused PUBLISH" % cid)
                self.assertEqual(len(self.published_by(broker, "a-ok-" + v)), 1)
                self.assertIn('denied PUBLISH to "up/acl/bob/q1" to client "a-bad1-%s" '
                              '(user "alice")' % v, proxy.log())

                # Reads: eve may read alice's topics only; admin everything.
                admin = self.subscribe(broker, version, ["up/acl/#"], "a-admin2-" + v, 2, qos=1,
                                       user="admin")
                eve = self.subscribe(broker, version, ["up/acl/#"], "a-eve-" + v, 1, qos=1,
                                     user="eve")
                self.publish(version, "up/acl/bob/t", "a-bob-" + v, "from-bob", qos=1,
                             user="bob")
                self.publish(version, "up/acl/alice/u", "a-alice-" + v, "from-alice", qos=1,
                             user="alice")
                self.assertEqual(self.received(admin), ["up/acl/bob/t 1 from-bob",
                                                        "up/acl/alice/u 1 from-alice"])
                self.assertEqual(self.received(eve), ["up/acl/alice/u 1 from-alice"])
                # The broker sent eve both; the proxy withheld bob's and acknowledged it.
                self.assertRegex(broker.log(), r"Sending PUBLISH to a-eve-%s \(d0, q1, r0, m\d+, "
                                 r"'up/acl/bob/t'" % v)
                self.assertTrue(broker.wait_log(r"^\d+: Received PUBACK from a-eve-%s " % v, 2,
                                                timeout=5), broker.log()[-3000:])
                self.assertIn('denied delivery of "up/acl/bob/t" to client "a-eve-%s" '
                              '(user "eve")' % v, proxy.log())
                ids += ["a-%s-%s" % (n, v) for n in ("admin", "bad0", "bad1", "ok", "admin2",
                                                     "eve", "bob", "alice")]
        # The refused clients did connect: only their PUBLISHes were held back.
        self.finish(proxy, broker, ids, connects=len(ids), publish_refused=4)

    def test_05_the_broker_stopped_under_connected_clients(self):
        broker = self.start_broker()
        proxy = self.start_proxy()
        subs = []
        for version in VERSIONS:
            v = short(version)
            p, lines, command = self.paho(version, "s-paho-" + v)
            command("sub up/stop/# 1")
            self.assertEqual(lines.next(10), "SUBACK 1")
            subs.append((version, p, lines))
        self.publish("mqttv5", "up/stop/before", "s-pub-before", "before", qos=1)
        for version, _, lines in subs:
            self.assertEqual(lines.next(10), "MSG up/stop/before 1 before", version)
        self.assert_via_proxy(broker, ["s-paho-4", "s-paho-5", "s-pub-before"])

        started = time.monotonic()
        broker.stop()
        for version, p, lines in subs:
            with self.subTest("the proxy closes the client's connection", version=version):
                line = lines.next(max(0.1, 5 - (time.monotonic() - started)))
                self.assertTrue(line.startswith("DISCONNECTED "), line)
            # Paho would reconnect (and be refused) every second or so.
            p.kill()
            p.wait(5)
        self.assertLess(time.monotonic() - started, 5.5)

        for version in VERSIONS:
            with self.subTest("refused while the broker is away", version=version):
                self.refused(version, "s-refused-" + short(version))
        self.assertIsNone(proxy.proc.poll(), "the proxy exited:\n%s" % proxy.log()[-3000:])
        self.no_error_lines(proxy)

        broker = self.start_broker(suffix="-restarted")
        sub = self.subscribe(broker, "mqttv311", ["up/stop/after"], "s-sub-after", 1, qos=1)
        self.publish("mqttv5", "up/stop/after", "s-pub-after", "after", qos=1)
        self.assertEqual(self.received(sub), ["up/stop/after 1 after"])
        self.assert_via_proxy(broker, ["s-sub-after", "s-pub-after"])
        self.no_error_lines(proxy)
        counters = self.stop_and_count(proxy)
        # The refused Paho reconnections (if any came before the kill) are counted too.
        self.assertGreaterEqual(counters.get("mqtt_connects_refused", 0), 2, counters)
        self.assert_counters(counters, connects=5, refused=None)

    def test_06_tls_to_the_broker(self):
        broker = self.start_broker()
        proxy = self.start_proxy(port=TLS_PORT, upstream_tls=True, cafile=self.certs.ca_crt)
        ids = []
        for version in VERSIONS:
            with self.subTest(version=version):
                v = short(version)
                sub = self.subscribe(broker, version, ["up/tls/v" + v], "t-sub-" + v, 1, qos=1)
                self.publish(version, "up/tls/v" + v, "t-pub-" + v, "over-tls-v" + v, qos=1)
                self.assertEqual(self.received(sub), ["up/tls/v%s 1 over-tls-v%s" % (v, v)])
                ids += ["t-sub-" + v, "t-pub-" + v]
        counters = self.finish(proxy, broker, ids, via={"listener": TLS_PORT}, connects=4)

        # Another CA, and the right CA with a certificate for another address.
        for suffix, port, cafile in (("-other-ca", TLS_PORT, self.other_ca.ca_crt),
                                     ("-wrong-name", WRONG_NAME_PORT, self.certs.ca_crt)):
            with self.subTest(suffix[1:]):
                proxy = self.start_proxy(port=port, upstream_tls=True, cafile=cafile,
                                         suffix=suffix)
                dialled = re.compile(r"^\d+: New connection from %s:\d+ on port %d\.$"
                                     % (re.escape(H1), port), re.M)
                before = len(dialled.findall(broker.log()))
                refused = []
                for version in VERSIONS:
                    cid = "t%s-%s" % (suffix, short(version))
                    self.refused(version, cid)
                    refused.append(cid)
                # The proxy did dial the broker (a TCP connection each), but no CONNECT got there.
                self.assertEqual(len(dialled.findall(broker.log())) - before, len(refused),
                                 broker.log()[-3000:])
                for cid in refused:
                    self.assertNotIn(cid, broker.clients(), "the broker got %s's CONNECT" % cid)
                self.assertTrue(wait_for(lambda: re.search(r"(?i)certificate verify failed",
                                                           proxy.log()), 5),
                                "the proxy logged no verification failure:\n%s"
                                % proxy.log()[-3000:])
                self.assertIsNone(proxy.proc.poll())
                counters = self.stop_and_count(proxy)
                self.assert_counters(counters, connects=0, refused=2)

    def test_07_websocket_clients_in_upstream_mode(self):
        broker = self.start_broker()
        proxy = self.start_proxy()
        ids = []
        for version in VERSIONS:
            with self.subTest(version=version):
                v = short(version)
                cid = "ws-paho-" + v
                p, lines, command = self.paho_ws(version, cid)
                # Paho (WebSocket, through the proxy) -> mosquitto_sub (TCP, through the proxy).
                up = "up/ws/v%s/up" % v
                sub = self.subscribe(broker, version, [up], "ws-sub-" + v, 2, qos=1)
                sent = ["from-ws-v%s-%d" % (v, i) for i in range(2)]
                for text in sent:
                    command("pub %s 1 %s" % (up, text))
                published, acked = [], set()
                while len(published) < len(sent) or len(acked) < len(sent):
                    line = lines.next(15)
                    if line.startswith("PUBLISHED "):
                        published.append(int(line.split()[1]))
                    elif line.startswith("PUBACK "):
                        acked.add(int(line.split()[1]))
                    elif line.startswith("DISCONNECTED"):
                        self.fail("Paho over WebSocket: %s" % line)
                self.assertEqual(acked, set(published))
                self.assertEqual(self.received(sub), ["%s 1 %s" % (up, t) for t in sent])
                self.assertEqual(len(self.published_by(broker, cid)), len(sent))
                # mosquitto_pub straight to the broker -> Paho (WebSocket, through the proxy).
                down = "up/ws/v%s/down" % v
                command("sub %s 1" % down)
                self.assertEqual(lines.expect("SUBACK", 10), "SUBACK 1")
                self.assertTrue(broker.wait_log(r"^\d+: Sending SUBACK to %s$" % cid),
                                broker.log()[-3000:])
                self.publish(version, down, "ws-direct-" + v, "to-ws-v" + v, qos=1, server=H4)
                self.assertEqual(lines.expect("MSG", 15), "MSG %s 1 0 to-ws-v%s" % (down, v))
                command("quit")
                self.assertEqual(p.wait(10), 0)
                self.assertTrue(broker.wait_log(r"^\d+: Received DISCONNECT from %s$" % cid),
                                broker.log()[-3000:])
                ids += [cid, "ws-sub-" + v]
        counters = self.finish(proxy, broker, ids, connects=len(ids))
        self.assertEqual(counters.get("ws_upgrades", 0), 2, counters)

    def test_08_upstream_with_peers_is_refused(self):
        # Outside Mininet, in a network namespace of its own with only lo (up): should the proxy
        # start after all, what it does to lo stays there.
        for tool in ("unshare", "ip"):
            if shutil.which(tool) is None:
                self.skipTest("%s is not installed" % tool)
        upstream = ["--upstream", "%s:%d" % (H4, PLAIN_PORT)]
        for args in (upstream + ["-F", H3], ["-F", H3, "--upstream", H4],
                     # The broker's own credentials are the upstream broker's too.
                     upstream + ["-u", testbed.USER, "-p", testbed.PASSWORD],
                     # TLS options without upstream mode.
                     ["--upstream-tls"]):
            with self.subTest(args=args):
                cmd = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
                       ARGS.proxy, "-i", "lo", "-t", str(PLAIN_PORT)] + args
                p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                try:
                    out = p.communicate(timeout=10)[0]
                except subprocess.TimeoutExpired:
                    p.kill()
                    out = p.communicate()[0]
                    self.fail("the proxy was still running 10 s after %s:\n%s"
                              % (cmd, out.decode(errors="replace")))
                lines = out.decode(errors="replace").splitlines()
                self.assertNotEqual(p.returncode, 0, lines)
                self.assertEqual(len(lines), 1, lines)
                self.assertIn("upstream", lines[0].lower(), lines)


    # -- backpressure (tests 9 and 10) -----------------------------------------------------------

    def bp_client(self, host, args, name):
        """bp_client.py (BP_CLIENT) in `host` with `args`; its stderr in bp-TAG-NAME.err."""
        path = os.path.join(self.tb.artifacts, "bp_client.py")
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write(BP_CLIENT)
        err = open(os.path.join(self.tb.artifacts, "bp-%s-%s.err" % (self.tag(), name)), "wb")
        self.addCleanup(err.close)
        p = self.tb.popen(host, ["/usr/bin/python3", path] + list(args), stdin=subprocess.PIPE,
                          stderr=err)
        self.addCleanup(self._end, p)
        return BpClient(p)

    def bp_record(self, *lines):
        """Measured numbers: to stderr and to backpressure-TAG.txt in the artifacts."""
        with open(os.path.join(self.tb.artifacts, "backpressure-%s.txt" % self.tag()), "a") as f:
            for line in lines:
                f.write(line + "\n")
                print("%s: %s" % (self._testMethodName, line), file=sys.stderr)

    def bp_sockets(self, label, hosts):
        """`ss -tnmi` of port 1883 in `hosts` (the proxy's clients have no kernel socket on h1:
        only its connections to the broker show there), appended to ss-TAG.txt, and recorded
        (bp_record) as one line per socket: host, Recv-Q, Send-Q, local and peer address.
        {host: [(Recv-Q, Send-Q, local, peer)]}."""
        found = {}
        with open(os.path.join(self.tb.artifacts, "ss-%s.txt" % self.tag()), "a") as f:
            for host in hosts:
                _, out, err = self.tb.run(host, ["ss", "-Htnmi", "( sport = :%d or dport = :%d )"
                                                 % (PLAIN_PORT, PLAIN_PORT)], timeout=10)
                f.write("== %s, %s\n%s%s\n" % (label, host, out, err))
                for line in out.splitlines():
                    words = line.split()
                    if len(words) >= 5 and words[0] == "ESTAB":
                        found.setdefault(host, []).append(
                            (int(words[1]), int(words[2]), words[3], words[4]))
        self.bp_record(*["%s: %s Recv-Q %d Send-Q %d %s -> %s" % (label, host, r, q, a, b)
                         for host in hosts for r, q, a, b in found.get(host, [])])
        return found

    @staticmethod
    def bp_packet_size():
        body = 2 + len(BP_TOPIC) + BP_SIZE
        return 1 + (1 if body < 128 else 2 if body < 16384 else 3) + body

    def bp_stop_broker_process(self, broker):
        """SIGSTOP by PID (undone by a cleanup, before the broker's own stop): it reads nothing."""
        os.kill(broker.pid, signal.SIGSTOP)
        self.addCleanup(self.bp_continue, broker)

        def stopped():
            with open("/proc/%d/stat" % broker.pid) as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "T"
        self.assertTrue(wait_for(stopped, 5), "mosquitto (PID %d) did not stop" % broker.pid)

    @staticmethod
    def bp_continue(broker):
        if broker.running():
            os.kill(broker.pid, signal.SIGCONT)

    def test_09_a_broker_that_stops_reading(self):
        # Mosquitto drops a QoS 0 message for a subscriber whose outgoing packets number
        # max_queued_messages (1000 by default) already: the burst the proxy forwards once the
        # broker runs again would overflow that. 0: no limit, so every message is delivered.
        broker = self.start_broker(extra_config=["max_queued_messages 0"])
        proxy = self.start_proxy()
        count, seconds, each = 30000, 25, self.bp_packet_size()
        sub = self.bp_client("h2", ["sub", H4, str(PLAIN_PORT), "bp-direct", BP_TOPIC, "read",
                                    str(BP_SIZE)], "sub")
        self.assertEqual(sub.wait_word("SUBACK", 15), ["SUBACK", "0"], sub.lines)
        pub = self.bp_client("h3", ["pub", H1, str(PLAIN_PORT), "bp-pub", BP_TOPIC, str(count),
                                    str(BP_SIZE), str(seconds)], "pub")
        self.assertEqual(pub.wait_word("CONNACK", 15), ["CONNACK", "0"], pub.lines)

        rss_before = vm_rss_kib(proxy.proc.pid)
        self.bp_stop_broker_process(broker)
        sampler = RssSampler(proxy.proc.pid)
        self.addCleanup(sampler.stop)
        pub.command("go")
        self.assertTrue(pub.wait(lambda c: c.sent() and c.sent()[0] >= 3.0, 10), pub.lines[-5:])
        at3 = pub.sent()
        time.sleep(3)
        at6 = pub.sent()
        self.bp_sockets("broker stopped, 6 s into the flood", ("h1", "h3", "h4"))
        rss_stopped = sampler.peak()
        self.bp_record(
            "broker stopped: proxy VmRSS before %d KiB, peak %d KiB (+%d KiB)"
            % (rss_before, rss_stopped, rss_stopped - rss_before),
            "broker stopped: publisher sent %d B at %.1f s (%d B of it still in its kernel), "
            "%d B at %.1f s (%d B in its kernel): +%d B in 3 s; %d B (%d messages) taken by the "
            "proxy, of %d B it wanted to send"
            % (at3[1], at3[0], at3[2], at6[1], at6[0], at6[2], at6[1] - at3[1], at6[1] - at6[2],
               (at6[1] - at6[2]) // each, count * each))
        self.assertNotIn("DONE", pub.latest, "the flood went through a stopped broker")
        self.assertLess(at6[1] - at3[1], BP_BLOCKED_GROWTH,
                        "the publisher was not blocked: %d bytes more in 3 s" % (at6[1] - at3[1]))
        self.assertLess(at6[1] - at6[2], BP_STOPPED_LIMIT,
                        "the proxy took %d bytes from a client while the broker read nothing"
                        % (at6[1] - at6[2]))
        # Its own kernel's send buffer included.
        self.assertLess(at6[1], BP_STOPPED_LIMIT,
                        "the client sent %d bytes while the broker read nothing" % at6[1])
        self.assertLess(rss_stopped - rss_before, BP_RSS_LIMIT_KIB)
        self.assertIsNone(proxy.proc.poll(), proxy.log()[-3000:])

        # The broker reads again: everything goes on, and nothing was lost.
        resumed = time.monotonic()
        os.kill(broker.pid, signal.SIGCONT)
        done = pub.wait_word("DONE", seconds + 20)
        self.assertIsNotNone(done, pub.lines[-5:])
        sent_bytes, sent = int(done[1]), int(done[2])
        flushed = pub.wait_word("FLUSHED", 70)
        got = sub.wait(lambda c: c.recv()[0] >= sent, 30)
        drained = time.monotonic() - resumed
        rss_peak = sampler.stop().peak()
        received = sub.recv()
        broker_got = len(re.findall(r"^\d+: Received PUBLISH from bp-pub ", broker.log(), re.M))
        self.bp_record(
            "after SIGCONT: publisher %s, %d B = %d messages (%s); its kernel then held %s B"
            % ("done" if done[3] == "count" else "stopped by its time limit", sent_bytes, sent,
               " ".join(done), flushed[1] if flushed else "?"),
            "after SIGCONT: the broker logged %d PUBLISHes from bp-pub; the subscriber on h2 got "
            "%d (last sequence number %d, %d errors) %.1f s after SIGCONT"
            % (broker_got, received[0], received[1], received[2], drained),
            "whole test: proxy VmRSS before %d KiB, peak %d KiB (+%d KiB), %d samples"
            % (rss_before, rss_peak, rss_peak - rss_before, len(sampler.samples)))
        self.assertEqual(flushed, ["FLUSHED", "0"], pub.lines[-5:])
        self.assertTrue(got, "the subscriber got %s of %d messages" % (received, sent))
        self.assertEqual(received, (sent, sent - 1, 0), sub.lines[-10:])
        self.assertEqual(broker_got, sent)
        self.assertNotIn("Outgoing messages are being dropped", broker.log())
        # Far more than the proxy may hold: the bounds above say something.
        self.assertGreater(sent_bytes, 2 * BP_STOPPED_LIMIT)
        self.assertLess(rss_peak - rss_before, BP_RSS_LIMIT_KIB)
        self.assertTrue(pub.wait_word("CLOSED", 15), pub.lines[-5:])
        self.assertEqual(pub.proc.wait(10), 0)
        self.assertIsNone(proxy.proc.poll(), proxy.log()[-3000:])
        self.finish(proxy, broker, ["bp-pub"], strict=False, connects=1)

    def test_10_a_client_that_stops_reading(self):
        # The broker may queue without limit for the subscriber that stopped reading (the default
        # would drop beyond 1000 messages): all the flood presses on the proxy.
        broker = self.start_broker(extra_config=["max_queued_messages 0"])
        proxy = self.start_proxy()
        count, seconds, each = 50000, 25, self.bp_packet_size()
        stalled = self.bp_client("h2", ["sub", H1, str(PLAIN_PORT), "bp-stalled", BP_TOPIC,
                                        "stall", str(BP_SIZE)], "stalled")
        self.assertEqual(stalled.wait_word("SUBACK", 15), ["SUBACK", "0"], stalled.lines)
        self.assertTrue(stalled.wait_word("STALLED", 5), stalled.lines)
        alive = self.subscribe(broker, "mqttv311", [BP_ALIVE_TOPIC], "bp-alive", 1, qos=1)
        pub = self.bp_client("h3", ["pub", H4, str(PLAIN_PORT), "bp-flood", BP_TOPIC, str(count),
                                    str(BP_SIZE), str(seconds)], "pub")
        self.assertEqual(pub.wait_word("CONNACK", 15), ["CONNACK", "0"], pub.lines)

        rss_before = vm_rss_kib(proxy.proc.pid)
        broker_before = vm_rss_kib(broker.pid)
        sampler = RssSampler(proxy.proc.pid)
        self.addCleanup(sampler.stop)
        broker_sampler = RssSampler(broker.pid)
        self.addCleanup(broker_sampler.stop)
        pub.command("go")
        self.assertTrue(pub.wait(lambda c: "DONE" in c.latest
                                 or (c.sent() and c.sent()[1] >= count * each // 3), 20),
                        pub.lines[-5:])
        mid = self.bp_sockets("a third into the flood", ("h1", "h2", "h4"))
        # Meanwhile, through the same proxy: another subscriber gets another topic.
        self.publish("mqttv311", BP_ALIVE_TOPIC, "bp-alive-pub", "alive", qos=1)
        self.assertEqual(self.received(alive, timeout=20), ["%s 1 alive" % BP_ALIVE_TOPIC])
        alive_at = pub.sent()
        done = pub.wait_word("DONE", seconds + 20)
        self.assertIsNotNone(done, pub.lines[-5:])
        flushed = pub.wait_word("FLUSHED", 70)
        time.sleep(2)  # the broker sends what it can
        self.bp_sockets("after the flood", ("h1", "h2", "h4"))
        self.assertIsNone(proxy.proc.poll(), proxy.log()[-3000:])
        rss_peak = sampler.stop().peak()
        broker_peak = broker_sampler.stop().peak()
        sent_bytes, sent = int(done[1]), int(done[2])
        to_stalled = len(re.findall(r"^\d+: Sending PUBLISH to bp-stalled ", broker.log(), re.M))
        self.bp_record(
            "flood straight to the broker: %d B = %d messages (%s), its kernel then held %s B; "
            "the other subscriber got its message when %d B were sent"
            % (sent_bytes, sent, " ".join(done), flushed[1] if flushed else "?",
               alive_at[1] if alive_at else -1),
            "the flood took %.1f s; the broker logged %d PUBLISHes as sent to bp-stalled (queued: "
            "its socket took far fewer); broker VmRSS %d KiB before, peak %d KiB (+%d KiB)"
            % (pub.sent()[0], to_stalled, broker_before, broker_peak,
               broker_peak - broker_before),
            "proxy VmRSS before %d KiB, peak %d KiB (+%d KiB), %d samples every 0.25 s"
            % (rss_before, rss_peak, rss_peak - rss_before, len(sampler.samples)))
        self.assertLess(rss_peak - rss_before, BP_RSS_LIMIT_KIB)
        # Far more than the proxy may hold: the bound above says something.
        self.assertGreater(sent_bytes, 2 * BP_RSS_LIMIT_KIB * 1024)
        # Held back, not dropped: the proxy left the broker's bytes unread in its kernel.
        self.assertGreater(max([r for r, _, _, peer in mid.get("h1", [])
                                if peer == "%s:%d" % (H4, PLAIN_PORT)] or [0]), 0,
                           "no unread bytes in the proxy's sockets to the broker: %s" % mid)
        self.assertEqual(flushed, ["FLUSHED", "0"], pub.lines[-5:])

        # The subscriber that stopped reading goes (by PID); the proxy carries on.
        stalled.proc.kill()
        stalled.proc.wait(5)
        self.assertTrue(broker.wait_log(r"^\d+: Client bp-stalled (closed its connection|"
                                        r"disconnected)", timeout=10), broker.log()[-3000:])
        self.assertIsNone(proxy.proc.poll(), proxy.log()[-3000:])
        self.assertEqual(broker.clients()["bp-flood"][0], H3)
        self.finish(proxy, broker, ["bp-stalled", "bp-alive", "bp-alive-pub"],
                    strict=False, connects=3)

def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", default=os.path.join(REPO, "build", "mqtt_proxy"))
    ap.add_argument("--acl-plugin",
                    default=os.path.join(REPO, "build", "plugins", "mqtt_proxy_acl_file.so"))
    ap.add_argument("--artifacts", default=os.path.join(REPO, "build", "upstream-artifacts"))
    ap.add_argument("-k", dest="pattern", default=None, help="run only tests matching this")
    ARGS = ap.parse_args()
    ARGS.proxy = os.path.abspath(ARGS.proxy)
    ARGS.acl_plugin = os.path.abspath(ARGS.acl_plugin)
    ARGS.artifacts = os.path.abspath(ARGS.artifacts)
    if testbed is not None and os.geteuid() == 0:
        missing = [tool for tool in ("mosquitto_sub", "openssl", "ss")
                   if shutil.which(tool) is None]
        if not os.access(MOSQUITTO, os.X_OK):
            missing.append("mosquitto")
        if subprocess.run(["/usr/bin/python3", "-c", "import paho.mqtt.client"],
                          capture_output=True).returncode != 0:
            missing.append("python3-paho-mqtt")
        if missing:
            print("upstream: skipped: %s not installed (scripts/setup.sh)" % ", ".join(missing),
                  file=sys.stderr)
            return procs.SKIP
        if not os.path.isfile(ARGS.acl_plugin):
            print("upstream: %s is not built" % ARGS.acl_plugin, file=sys.stderr)
            return 1
    return procs.run_suite("upstream", Upstream, ARGS, testbed is not None)


if __name__ == "__main__":
    sys.exit(main())
