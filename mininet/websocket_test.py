#!/usr/bin/python3
"""MQTT over WebSocket (RFC 6455, --ws-port 8080, --ws-path /mqtt; docs/websocket.md) end to end in
the reference Mininet testbed, with stock clients and a real browser.

Each test starts its own proxy on h1 (and h4 where peers are tested), at --log-level debug, with
the testbed's username and password, and stops it at its end (by PID), so its log and the counters
it logs at exit (ws_upgrades, ws_upgrades_refused, ws_protocol_errors) are the test's alone.

1. Debian's python3-paho-mqtt (1.6, transport="websockets", ws_set_options(path="/mqtt"),
   mininet/web/paho_ws_client.py) on h2 subscribes through h1's WebSocket port at QoS 0 and at
   QoS 1; stock mosquitto_pub on h3 publishes over plain TCP at QoS 0 and 1 (and 200- and
   70000-byte payloads: the 16- and 64-bit frame lengths, and a frame larger than the proxy's
   receive buffer). The payloads and the QoS each message arrives at (min of the two) are checked,
   and the other way round: Paho publishes over WebSocket, mosquitto_sub receives over TCP. MQTT
   3.1.1 and 5.0 both. The proxy must log each Paho session as a WebSocket one (subprotocol mqtt)
   and its DISCONNECT as a clean one.
2. Across peers: proxies on h1 and h4 name each other (-F). A WebSocket subscriber on h1 gets what a
   TCP publisher sends to h4 (at QoS 0: docs/peering.md, datagrams carry QoS 0), and a TCP
   subscriber on h1 what a WebSocket publisher sends to h4's WebSocket port.
3. A real browser: Debian's chromium, headless (--headless --no-sandbox, as root) in h3, loads
   mininet/web/index.html from python3 -m http.server on h2 (port 8000). The page runs MQTT.js
   (mqtt.min.js of the npm package mqtt@4.3.7, the version Debian's node-mqtt packages, which ships
   no browser bundle: fetched with `npm pack` at test time into the artifacts directory, its
   integrity checked) and connects to ws://192.168.1.101:8080/mqtt, subscribes at QoS 1 and appends
   each message to its DOM. The test drives it through the DevTools protocol
   (mininet/web/cdp.py, python3-websocket): it reads the DOM after mosquitto_pub on h4 published
   live (not retained) messages at QoS 1 and 0, and checks a retained one published before the page
   loaded too; the page publishes at QoS 1 and mosquitto_sub on h4 gets it. The browser's own
   record of the handshake (Network.webSocketHandshakeResponseReceived: 101, subprotocol mqtt, its
   permessage-deflate offer declined) is checked. MQTT 3.1.1 and 5.0. Screenshots of the page
   (Page.captureScreenshot) are written to the artifacts directory as browser-v4.png and
   browser-v5.png and kept there even when every test passes.
4. A browser's handshake to a wrong path (/wrong, /MQTT, /mqtt/) sent over a raw socket from h3 is
   answered 404 with Connection: close and a FIN; the same request to /mqtt?query is answered 101
   with the right Sec-WebSocket-Accept and subprotocol and no extension.
5. A PUBLISH, a DISCONNECT and a Close frame written frame by frame (mininet/web/raw_ws_session.py,
   a CONNECT with a Will before them), 0.3 s apart and then in one TCP segment: both times the
   PUBLISH must reach a TCP subscriber and the Will must be discarded. The one-segment case is
   what Chromium sends when MQTT.js ends a session (DISCONNECT, then WebSocket.close()); test 3
   checks that DISCONNECT too, in a subTest so that the rest of the browser test still runs.

tcpdump records h1-eth0 (tcp 1883 and 8080, udp 1883) for the whole run and h3-eth0 in test 3.
Exit status 77 (ctest: skipped) when not root, or when Mininet, Open vSwitch, the Mosquitto clients,
python3-paho-mqtt, python3-websocket, chromium or npm are missing (scripts/setup.sh installs them).
On failure the logs, pcaps, DevTools events and screenshots stay in the artifacts directory.
"""

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import unittest
import urllib.parse

import procs  # this script's directory is first on sys.path
from procs import Lines, wait_for

try:
    import testbed
except ImportError:  # Mininet imports only in Debian's /usr/bin/python3: main() skips
    testbed = None
else:
    H1, H2, H3, H4 = (testbed.host_ip(i) for i in (1, 2, 3, 4))

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WEB = os.path.join(HERE, "web")
PAHO_WS = os.path.join(WEB, "paho_ws_client.py")
CDP = os.path.join(WEB, "cdp.py")
RAW_HANDSHAKE = os.path.join(WEB, "raw_handshake.py")
RAW_WS_SESSION = os.path.join(WEB, "raw_ws_session.py")
ARGS = None

WS_PORT, WS_PATH = 8080, "/mqtt"
HTTP_PORT = 8000  # the page's server on h2
DEVTOOLS_PORT = 9222  # on h3's own 127.0.0.1
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# MQTT.js's browser bundle: the npm package of the version Debian's node-mqtt is (4.3.7), checked
# against the integrity the registry published for it.
MQTTJS = "mqtt@4.3.7"
MQTTJS_INTEGRITY = ("sha512-ew3qwG/TJRorTz47eW46vZ5oBw5MEYbQZVaEji44j5lAUSQSqIEoul7Kua/BatBW0H0kKQcC9kwUH"
                    "a1qzaWHSw==")
VERSIONS = {"311": ("mqttv311", 4), "5": ("mqttv5", 5)}  # paho's name: mosquitto's, CONNECT's
CAPTURE_BPF = "tcp port 8080 or tcp port 1883 or udp port 1883"
SCREENSHOTS = {}  # file name: PNG bytes, written again after a successful run (see main)


def payload(n, tag):
    """`n` printable bytes starting with `tag`, no two neighbouring 64-byte blocks alike."""
    body = "".join("%s-%06d|" % (tag, i) for i in range(n // 8 + 1))
    return body[:n]


def short(text, n=120):
    return text if len(text) <= n else "%s...(%d bytes)" % (text[:n], len(text))


class WebSocketEndToEnd(testbed.ProxyChecks if testbed else object, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tb = testbed.Testbed(ARGS.artifacts, proxy_binary=ARGS.proxy)
        cls.tb.start()
        try:
            cls.capture("h1")
        except BaseException:
            cls.tb.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.tb.stop()

    @classmethod
    def capture(cls, host, bpf=CAPTURE_BPF, suffix=""):
        cap = procs.Capture(cls.tb.host(host), "%s-eth0" % host,
                            os.path.join(ARGS.artifacts, "%s%s.pcap" % (host, suffix)), bpf=bpf)
        cls.tb.captures.append(cap)
        return cap

    # -- helpers -------------------------------------------------------------------------------

    def tag(self):
        return self._testMethodName.split("_")[1]

    def start_proxy(self, host="h1", peers=(), extra=()):
        proxy = self.tb.start_proxy(host, peers=list(peers),
                                    extra=["--log-level", "debug"] + list(extra),
                                    log_suffix="-%s" % self.tag())
        self.addCleanup(self.stop_proxy, proxy)
        return proxy

    @staticmethod
    def _end(p):
        if p.poll() is None:
            p.kill()
            p.wait()

    def auth_args(self):
        return ["-u", testbed.USER, "-P", testbed.PASSWORD]

    def wait_subscribe(self, proxy, client_id, topic, qos, p=None):
        needle = "SUBSCRIBE client="
        tail = " id=%s topic=%s qos=%d" % (client_id, topic, qos)
        ok = wait_for(lambda: any(line.endswith(tail) and needle in line
                                  for line in proxy.log().splitlines())
                      or (p is not None and p.poll() is not None), 10)
        if p is not None and p.poll() is not None:
            self.fail("subscriber %s ended: %s" % (client_id, p.communicate()))
        self.assertTrue(ok, "no SUBSCRIBE of %s to %s at QoS %d:\n%s"
                        % (client_id, topic, qos, proxy.log()[-3000:]))

    def mosquitto_pub(self, host, broker, topic, message, qos, version="311", retain=False,
                      client_id=None):
        args = ["mosquitto_pub", "-h", broker, "-p", "1883", "-t", topic, "-m", message,
                "-q", str(qos), "-V", VERSIONS[version][0]] + self.auth_args()
        if retain:
            args.append("-r")
        if client_id:
            args += ["-i", client_id]
        rc, out, err = self.tb.run(host, args, timeout=20)
        self.assertEqual(rc, 0, "mosquitto_pub %s: %s %s" % (topic, out, err))

    def mosquitto_sub(self, host, broker, topic, qos, count, client_id, proxy, version="311"):
        """mosquitto_sub over TCP for `count` messages, printing "topic qos retain payload", once
        `proxy` logged its SUBSCRIBE."""
        p = self.tb.popen(host, ["mosquitto_sub", "-h", broker, "-p", "1883", "-t", topic,
                                 "-q", str(qos), "-C", str(count), "-W", "20", "-F", "%t %q %r %p",
                                 "-i", client_id, "-V", VERSIONS[version][0]] + self.auth_args())
        self.addCleanup(self._end, p)
        self.wait_subscribe(proxy, client_id, topic, qos, p)
        return p

    def received(self, sub, timeout=25):
        try:
            out, err = sub.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail("mosquitto_sub still runs after %ss" % timeout)
        self.assertEqual(sub.returncode, 0, err.decode(errors="replace"))
        return out.decode(errors="replace").splitlines()

    def paho_ws(self, host, broker, client_id, version, port=WS_PORT):
        """A Paho client over WebSocket, connected; returns (process, lines, command)."""
        p = self.tb.popen(host, ["/usr/bin/python3", PAHO_WS, "--host", broker, "--port", str(port),
                                 "--path", WS_PATH, "--user", testbed.USER, "--password",
                                 testbed.PASSWORD, "--id", client_id, "--version", version],
                          stdin=subprocess.PIPE)
        self.addCleanup(self._end, p)
        lines = Lines(p.stdout)

        def command(c):
            p.stdin.write((c + "\n").encode())
            p.stdin.flush()

        first = lines.next(15)
        self.assertEqual(first, "CONNACK 0", "Paho over WebSocket to %s:%d did not connect"
                         % (broker, port))
        return p, lines, command

    def paho_quit(self, p, command):
        command("quit")
        self.assertEqual(p.wait(10), 0)

    def ws_session(self, proxy, client_id, version_number):
        """Asserts that `client_id` connected once, over WebSocket (the proxy logged the upgrade of
        its address with subprotocol mqtt), at protocol level `version_number`; returns its
        address."""
        connects = re.findall(r"CONNECT client=(\S+) id=%s user=%s keepalive=\d+ clean=\S+ "
                              r"version=(\d+)" % (re.escape(client_id), testbed.USER), proxy.log())
        self.assertEqual(len(connects), 1, "CONNECT lines of %s: %s" % (client_id, connects))
        address, version = connects[0]
        self.assertEqual(int(version), version_number)
        self.assertIn("%s: WebSocket open (path %s, subprotocol mqtt)" % (address, WS_PATH),
                      proxy.log(), "%s's connection is not logged as a WebSocket one" % client_id)
        return address

    def clean_disconnect(self, proxy, client_id):
        """The client sent DISCONNECT (over WebSocket, so the frames carried it intact)."""
        self.assertTrue(wait_for(lambda: re.search(r"DISCONNECT client=\S+ id=%s\n"
                                                   % re.escape(client_id), proxy.log()), 10),
                        "no clean DISCONNECT of %s:\n%s" % (client_id, proxy.log()[-2000:]))

    def messages(self, lines, count, timeout=20):
        """The next `count` MSG lines of a Paho client as (topic, qos, retain, payload)."""
        got = []
        while len(got) < count:
            line = lines.next(timeout)
            if line.startswith("MSG "):
                topic, qos, retain, text = line[4:].split(" ", 3)
                got.append((topic, int(qos), int(retain), text))
            elif line.startswith("DISCONNECTED") or line.startswith("ERROR"):
                self.fail("Paho: %s (after %s)" % (line, [short(m[3]) for m in got]))
        return got

    def assert_messages(self, got, expected):
        self.assertEqual([(t, q, r, short(m)) for t, q, r, m in got],
                         [(t, q, r, short(m)) for t, q, r, m in expected])
        self.assertEqual(got, expected)

    # -- 1: Paho over WebSocket, mosquitto over TCP, one proxy -----------------------------------

    def test_01_paho_websocket_and_mosquitto_tcp_at_qos_0_and_1_in_311_and_5(self):
        proxy = self.start_proxy()
        for version in ("311", "5"):
            mosq_version, level = VERSIONS[version]
            cid = "ws-paho-%s" % version
            base = "ws/%s" % version
            p, lines, command = self.paho_ws("h2", H1, cid, version)
            self.ws_session(proxy, cid, level)
            command("sub %s/q0 0" % base)
            self.assertEqual(lines.expect("SUBACK"), "SUBACK 0")
            command("sub %s/q1 1" % base)
            self.assertEqual(lines.expect("SUBACK"), "SUBACK 1")
            self.wait_subscribe(proxy, cid, base + "/q1", 1)

            # mosquitto_pub (TCP, h3) -> Paho (WebSocket, h2): QoS min(published, subscribed).
            expected = []
            for sub_qos in (0, 1):
                for pub_qos in (0, 1):
                    topic = "%s/q%d" % (base, sub_qos)
                    text = "v%s-sub%d-pub%d" % (version, sub_qos, pub_qos)
                    self.mosquitto_pub("h3", H1, topic, text, pub_qos, version)
                    expected.append((topic, min(sub_qos, pub_qos), 0, text))
            for size in (200, 70000):
                text = payload(size, "down%s" % version)
                self.mosquitto_pub("h3", H1, base + "/q1", text, 1, version)
                expected.append((base + "/q1", 1, 0, text))
            self.assert_messages(self.messages(lines, len(expected)), expected)

            # Paho (WebSocket, h2) -> mosquitto_sub (TCP, h3, subscribed at QoS 1).
            up = base + "/up"
            sub = self.mosquitto_sub("h3", H1, up, 1, 4, "ws-tcp-sub-%s" % version, proxy,
                                     version)
            sent = [(0, "up-q0-v%s" % version), (1, "up-q1-v%s" % version),
                    (1, payload(200, "up%s" % version)), (1, payload(70000, "up%s" % version))]
            for qos, text in sent:
                command("pub %s %d %s" % (up, qos, text))
            published, acked = [], set()
            while len(published) < len(sent) or len(acked) < len(sent):
                line = lines.next(20)
                if line.startswith("PUBLISHED "):
                    published.append(int(line.split()[1]))
                elif line.startswith("PUBACK "):
                    acked.add(int(line.split()[1]))
                elif line.startswith("DISCONNECTED"):
                    self.fail("Paho: %s" % line)
            self.assertEqual(acked, set(published), "Paho's publishes not all completed")
            got = self.received(sub)
            want = ["%s %d 0 %s" % (up, qos, text) for qos, text in sent]
            self.assertEqual([short(x) for x in got], [short(x) for x in want])
            self.assertEqual(got, want)
            self.paho_quit(p, command)
            self.clean_disconnect(proxy, cid)
        self.no_errors(proxy)
        counters = self.stop_and_count(proxy)
        self.assertEqual(counters.get("ws_upgrades"), 2, counters)
        self.assertEqual(counters.get("ws_upgrades_refused", 0), 0, counters)
        self.assertEqual(counters.get("ws_protocol_errors", 0), 0, counters)

    # -- 2: across peers -------------------------------------------------------------------------

    def test_02_websocket_clients_across_peers(self):
        h1 = self.start_proxy("h1", peers=[H4])
        h4 = self.start_proxy("h4", peers=[H1])
        for version in ("311", "5"):
            cid = "ws-peer-sub-%s" % version
            topic = "peer/%s/down" % version
            p, lines, command = self.paho_ws("h2", H1, cid, version)
            self.ws_session(h1, cid, VERSIONS[version][1])
            since = h4.log_size()
            command("sub %s 1" % topic)
            self.assertEqual(lines.expect("SUBACK"), "SUBACK 1")
            self.assertTrue(h4.wait_peer_interest(topic, since=since),
                            "h4 never learnt h1's interest in %s:\n%s" % (topic, h4.log()[-2000:]))
            expected = []
            for pub_qos in (1, 0):
                text = "across-peers-v%s-pub%d" % (version, pub_qos)
                self.mosquitto_pub("h3", H4, topic, text, pub_qos, version)
                # docs/peering.md: what a peer delivers reaches its subscribers at QoS 0.
                expected.append((topic, 0, 0, text))
            text = payload(3000, "peer%s" % version)
            self.mosquitto_pub("h3", H4, topic, text, 1, version)
            expected.append((topic, 0, 0, text))
            self.assert_messages(self.messages(lines, len(expected)), expected)
            self.paho_quit(p, command)

            # A WebSocket publisher on h4 (from h3), a TCP subscriber on h1 (from h2).
            up = "peer/%s/up" % version
            since = h4.log_size()
            sub = self.mosquitto_sub("h2", H1, up, 1, 1, "tcp-peer-sub-%s" % version, h1, version)
            self.assertTrue(h4.wait_peer_interest(up, since=since), h4.log()[-2000:])
            pub_id = "ws-peer-pub-%s" % version
            p, lines, command = self.paho_ws("h3", H4, pub_id, version)
            self.ws_session(h4, pub_id, VERSIONS[version][1])
            command("pub %s 1 from-ws-on-h4-v%s" % (up, version))
            self.assertTrue(lines.expect("PUBACK", 10).startswith("PUBACK "))
            self.assertEqual(self.received(sub), ["%s 0 0 from-ws-on-h4-v%s" % (up, version)])
            self.paho_quit(p, command)
        for proxy in (h1, h4):
            self.no_errors(proxy)
            counters = self.stop_and_count(proxy)
            self.assertEqual(counters.get("ws_upgrades"), 2, counters)
            self.assertEqual(counters.get("ws_protocol_errors", 0), 0, counters)

    # -- 3: headless Chromium with MQTT.js -------------------------------------------------------

    def fetch_mqttjs(self, into):
        """MQTT.js's browser bundle (dist/mqtt.min.js of the npm package) into `into`."""
        npm_dir = os.path.join(ARGS.artifacts, "npm")
        os.makedirs(npm_dir, exist_ok=True)
        # Outside the testbed's hosts: the registry is reached from the machine's own namespace.
        r = subprocess.run(["npm", "pack", MQTTJS, "--json", "--silent"], cwd=npm_dir,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, "npm pack %s: %s %s" % (MQTTJS, r.stdout, r.stderr))
        info = json.loads(r.stdout)[0]
        self.assertEqual(info["integrity"], MQTTJS_INTEGRITY, "npm's %s is not the one pinned"
                         % MQTTJS)
        with open(os.path.join(npm_dir, info["filename"]), "rb") as f:
            digest = base64.b64encode(hashlib.sha512(f.read()).digest()).decode()
        self.assertEqual("sha512-" + digest, MQTTJS_INTEGRITY)
        with tarfile.open(os.path.join(npm_dir, info["filename"])) as tar:
            member = tar.extractfile("package/dist/mqtt.min.js")
            with open(os.path.join(into, "mqtt.min.js"), "wb") as f:
                f.write(member.read())

    def start_http_server(self, directory):
        log = open(os.path.join(ARGS.artifacts, "http-server-h2.log"), "wb")
        self.addCleanup(log.close)
        p = self.tb.popen("h2", ["/usr/bin/python3", "-m", "http.server", str(HTTP_PORT),
                                 "--bind", H2, "--directory", directory],
                          stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(self._end, p)
        probe = ("import urllib.request\n"
                 "urllib.request.urlopen('http://%s:%d/index.html', timeout=2).read()\n"
                 % (H2, HTTP_PORT))
        ok = wait_for(lambda: p.poll() is None and
                      self.tb.run("h3", ["/usr/bin/python3", "-c", probe], timeout=10)[0] == 0,
                      15, 0.25)
        self.assertTrue(ok, "the page's server on h2 did not start")
        return p

    def test_03_headless_chromium_with_mqtt_js(self):
        web = os.path.join(ARGS.artifacts, "web")
        os.makedirs(web, exist_ok=True)
        shutil.copy(os.path.join(WEB, "index.html"), web)
        self.fetch_mqttjs(web)
        proxy = self.start_proxy()
        cap = self.capture("h3", bpf="tcp port 8080 or tcp port 8000", suffix="-browser")
        self.addCleanup(cap.stop)
        self.start_http_server(web)
        browser = Browser(self, "h3")
        self.addCleanup(browser.stop)
        for version, mosq in (("311", 4), ("5", 5)):
            v = str(mosq)
            cid = "chromium-v%s" % v
            base = "browser/v%s" % v
            # Retained before the page loads: its SUBSCRIBE brings it.
            self.mosquitto_pub("h4", H1, base + "/retained", "kept-v" + v, 1, version, retain=True)
            url = "http://%s:%d/index.html?%s" % (H2, HTTP_PORT, urllib.parse.urlencode({
                "broker": "ws://%s:%d%s" % (H1, WS_PORT, WS_PATH), "v": v, "id": cid,
                "user": testbed.USER, "password": testbed.PASSWORD, "topic": base + "/#",
                "qos": "1"}))
            self.assertEqual(browser.command("navigate " + url), "LOADED")
            self.assertTrue(wait_for(lambda: browser.eval("document.getElementById('state')"
                                                          ".textContent") == "subscribed", 15, 0.2),
                            "the page did not subscribe: state %r; events in %s; proxy:\n%s"
                            % (browser.eval("document.getElementById('state').textContent"),
                               browser.events_path, proxy.log()[-3000:]))
            self.assertEqual(browser.eval("window.granted"), [1])
            address = self.ws_session(proxy, cid, mosq)
            self.assertTrue(address.startswith(H3 + ":"), address)
            dom = ("JSON.stringify(Array.from(document.querySelectorAll('#messages li'))"
                   ".map(li => [li.textContent, Number(li.dataset.qos), Number(li.dataset.retain)]))")

            def shown(n):
                return wait_for(lambda: len(json.loads(browser.eval(dom))) >= n, 10, 0.1)

            self.assertTrue(shown(1), "the retained message is not shown: %s" % browser.eval(dom))
            # Live messages, published while the page is open (not retained).
            self.mosquitto_pub("h4", H1, base + "/live", "live-q1-v" + v, 1, version)
            self.mosquitto_pub("h4", H1, base + "/live", "live-q0-v" + v, 0, version)
            self.assertTrue(shown(3), "the live messages are not shown: %s" % browser.eval(dom))
            self.assertEqual(json.loads(browser.eval(dom)), [
                ["%s/retained kept-v%s" % (base, v), 1, 1],
                ["%s/live live-q1-v%s" % (base, v), 1, 0],
                ["%s/live live-q0-v%s" % (base, v), 0, 0]])
            # The page publishes (QoS 1: resolved on PUBACK); mosquitto_sub on h4 over TCP gets it.
            up = "browser-up/v" + v
            sub = self.mosquitto_sub("h4", H1, up, 1, 1, "tcp-from-browser-v" + v, proxy, version)
            self.assertEqual(browser.eval("publish('%s', 'from-chromium-v%s', 1)" % (up, v)), "ok")
            self.assertEqual(self.received(sub), ["%s 1 0 from-chromium-v%s" % (up, v)])
            self.assertEqual(browser.eval("document.getElementById('state').textContent"),
                             "subscribed")
            png = browser.screenshot("browser-v%s.png" % v)
            self.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")
            # MQTT.js sends DISCONNECT (in two frames, as it writes every packet), then calls
            # WebSocket.close(): Chromium writes them back to back, and the proxy must read the
            # DISCONNECT before the Close (see test_05).
            self.assertEqual(browser.eval("new Promise(r => client.end(false, {}, "
                                          "() => r('ended')))"), "ended")
            with self.subTest("MQTT.js's DISCONNECT before its Close is read", version=v):
                self.clean_disconnect(proxy, cid)
            self.check_browser_handshake(browser)
        browser.stop()
        self.no_errors(proxy)
        counters = self.stop_and_count(proxy)
        self.assertEqual(counters.get("ws_upgrades"), 2, counters)
        self.assertEqual(counters.get("ws_upgrades_refused", 0), 0, counters)
        self.assertEqual(counters.get("ws_protocol_errors", 0), 0, counters)

    def check_browser_handshake(self, browser):
        """Chromium's own record of its last WebSocket to the proxy: 101, the
        subprotocol mqtt, its permessage-deflate offer declined, binary frames both ways, no
        frame error."""
        events = browser.events()
        url = "ws://%s:%d%s" % (H1, WS_PORT, WS_PATH)
        ids = [e["params"]["requestId"] for e in events
               if e.get("method") == "Network.webSocketCreated" and e["params"]["url"] == url]
        self.assertTrue(ids, "Chromium recorded no WebSocket to %s" % url)
        rid = ids[-1]
        mine = [e for e in events if e.get("params", {}).get("requestId") == rid]
        responses = [e["params"]["response"] for e in mine
                     if e["method"] == "Network.webSocketHandshakeResponseReceived"]
        requests = [e["params"]["request"] for e in mine
                    if e["method"] == "Network.webSocketWillSendHandshakeRequest"]
        self.assertEqual(len(responses), 1, mine)
        self.assertEqual(responses[0]["status"], 101, responses[0])
        headers = {k.lower(): v for k, v in responses[0]["headers"].items()}
        sent = {k.lower(): v for k, v in requests[0]["headers"].items()} if requests else {}
        self.assertEqual(headers.get("sec-websocket-protocol"), "mqtt", headers)
        self.assertIn("permessage-deflate", sent.get("sec-websocket-extensions", ""), sent)
        self.assertNotIn("sec-websocket-extensions", headers)
        self.assertEqual([e for e in mine if e["method"] == "Network.webSocketFrameError"], [])
        for direction in ("Sent", "Received"):
            frames = [e["params"]["response"] for e in mine
                      if e["method"] == "Network.webSocketFrame" + direction]
            self.assertTrue(frames, "no frame %s" % direction.lower())
            self.assertEqual({f["opcode"] for f in frames}, {2}, "frames %s" % direction.lower())

    # -- 4: the wrong path ------------------------------------------------------------------------

    def handshake(self, target):
        rc, out, err = self.tb.run("h3", ["/usr/bin/python3", RAW_HANDSHAKE, H1, str(WS_PORT),
                                          target], timeout=20)
        self.assertEqual(rc, 0, "%s %s" % (out, err))
        return json.loads(out)

    def test_04_a_browser_handshake_to_a_wrong_path_gets_404(self):
        proxy = self.start_proxy()
        for target in ("/wrong", "/MQTT", "/mqtt/"):
            r = self.handshake(target)
            self.assertEqual(r["status"], "HTTP/1.1 404 Not Found", (target, r))
            self.assertEqual(r["headers"].get("connection"), ["close"], (target, r))
            self.assertEqual(r["headers"].get("content-length"), ["0"], (target, r))
            self.assertNotIn("sec-websocket-accept", r["headers"])
            self.assertEqual(r["after"], "", "bytes after the 404's head: %r" % r["after"])
            self.assertIs(r["closed"], True, "%s: the connection was not closed with a FIN" % target)
        # The right path, with a query: upgraded.
        r = self.handshake(WS_PATH + "?client=raw")
        self.assertEqual(r["status"], "HTTP/1.1 101 Switching Protocols", r)
        accept = base64.b64encode(hashlib.sha1((r["key"] + WS_GUID).encode()).digest()).decode()
        self.assertEqual(r["headers"].get("sec-websocket-accept"), [accept], r)
        self.assertEqual(r["headers"].get("sec-websocket-protocol"), ["mqtt"], r)
        self.assertEqual([v.lower() for v in r["headers"].get("upgrade", [])], ["websocket"], r)
        self.assertNotIn("sec-websocket-extensions", r["headers"])
        self.assertIs(r["closed"], False, "closed right after the 101")
        log = proxy.log()
        self.assertEqual(log.count("WebSocket handshake refused (404)"), 3, log[-3000:])
        self.no_errors(proxy)
        counters = self.stop_and_count(proxy)
        self.assertEqual(counters.get("ws_upgrades_refused"), 3, counters)
        self.assertEqual(counters.get("ws_upgrades"), 1, counters)

    # -- 5: data frames and the Close in one segment -----------------------------------------

    def test_05_frames_before_a_close_in_the_same_segment_are_read(self):
        # A PUBLISH, a DISCONNECT and a Close frame from a client (mininet/web/raw_ws_session.py,
        # h3), sent 0.3 s apart and then in one segment (as Chromium sends MQTT.js's DISCONNECT
        # and the Close): both times the PUBLISH reaches a TCP subscriber on h2, the Will is
        # discarded (the DISCONNECT was read) and the proxy answers the Close with 1000.
        proxy = self.start_proxy()
        for mode in ("apart", "one-segment"):
            cid = "ws-raw-%s" % mode
            topic = "ws/raw/%s" % mode
            sub = self.tb.popen("h2", ["mosquitto_sub", "-h", H1, "-t", topic + "/#", "-v", "-q",
                                       "1", "-C", "2", "-W", "4", "-i", "watch-" + cid]
                                + self.auth_args())
            self.addCleanup(self._end, sub)
            self.wait_subscribe(proxy, "watch-" + cid, topic + "/#", 1, sub)
            rc, out, err = self.tb.run("h3", ["/usr/bin/python3", RAW_WS_SESSION, H1, str(WS_PORT),
                                              WS_PATH, cid, topic, mode], timeout=20)
            self.assertEqual(rc, 0, "%s %s" % (out, err))
            r = json.loads(out)
            self.assertEqual(r["connack"], "20020000", r)
            self.assertIn([8, "03e8"], r["frames"], "the Close was not answered with 1000: %s" % r)
            out, _ = sub.communicate(timeout=15)  # -W 4: it waits for a second message in vain
            got = out.decode(errors="replace").splitlines()
            with self.subTest("the PUBLISH before the Close is delivered", mode=mode):
                self.assertIn("%s/last sent-before-close" % topic, got)
            with self.subTest("the DISCONNECT before the Close is read (no Will)", mode=mode):
                self.assertNotIn("%s/will will-published" % topic, got)
                self.clean_disconnect(proxy, cid)
        counters = self.stop_and_count(proxy)
        self.assertEqual(counters.get("ws_upgrades"), 2, counters)
        self.assertEqual(counters.get("ws_protocol_errors", 0), 0, counters)


class Browser:
    """Headless Chromium in a Mininet host and the DevTools driver (mininet/web/cdp.py) beside it;
    both stopped by PID."""

    def __init__(self, test, host):
        self.test = test
        self.tb = test.tb
        self.profile = tempfile.mkdtemp(prefix="mqtt-proxy-chromium-")
        self._log = open(os.path.join(ARGS.artifacts, "chromium-%s.log" % host), "wb")
        self.events_path = os.path.join(ARGS.artifacts, "devtools-events.jsonl")
        self.proc = self.tb.host(host).popen([
            "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--remote-debugging-port=%d" % DEVTOOLS_PORT, "--user-data-dir=" + self.profile,
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-default-apps",
            "--disable-extensions", "--window-size=900,600", "about:blank"],
            stdout=self._log, stderr=subprocess.STDOUT)
        self._cdp_log = open(os.path.join(ARGS.artifacts, "cdp-%s.log" % host), "wb")
        self.cdp = self.tb.host(host).popen(["/usr/bin/python3", CDP, "--port", str(DEVTOOLS_PORT),
                                             "--events", self.events_path],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=self._cdp_log)
        self.lines = Lines(self.cdp.stdout)
        first = self.lines.next(45)
        if first != "READY":
            self.stop()
            raise AssertionError("DevTools driver: %s (chromium log in %s)" % (first,
                                                                             self._log.name))

    def command(self, text, timeout=30):
        self.cdp.stdin.write((text + "\n").encode())
        self.cdp.stdin.flush()
        return self.lines.next(timeout)

    def eval(self, expression):
        answer = self.command("eval " + expression)
        if not answer.startswith("RESULT "):
            raise AssertionError("eval %s: %s" % (expression, answer))
        return json.loads(answer[len("RESULT "):])

    def screenshot(self, name):
        path = os.path.join(ARGS.artifacts, name)
        answer = self.command("screenshot " + path)
        if not answer.startswith("SCREENSHOT "):
            raise AssertionError("screenshot: %s" % answer)
        with open(path, "rb") as f:
            data = f.read()
        SCREENSHOTS[name] = data
        return data

    def events(self):
        with open(self.events_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def stop(self):
        if self.cdp.poll() is None:
            try:
                self.cdp.stdin.write(b"quit\n")
                self.cdp.stdin.flush()
                self.cdp.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.cdp.kill()
                self.cdp.wait()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                # mnexec -d made the browser a session and process group leader: its group is
                # its own helpers (zygote, renderer, GPU process), which SIGKILL would orphan.
                if os.getpgid(self.proc.pid) == self.proc.pid:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                else:
                    self.proc.kill()
                self.proc.wait()
        for f in (self._log, self._cdp_log):
            if not f.closed:
                f.close()
        shutil.rmtree(self.profile, ignore_errors=True)


def missing_tools():
    missing = [tool for tool in ("chromium", "npm") if shutil.which(tool) is None]
    for module, package in (("paho.mqtt.client", "python3-paho-mqtt"),
                            ("websocket", "python3-websocket")):
        if subprocess.run(["/usr/bin/python3", "-c", "import " + module],
                          capture_output=True).returncode != 0:
            missing.append(package)
    return missing


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", default=os.path.join(REPO, "build", "mqtt_proxy"))
    ap.add_argument("--artifacts", default=os.path.join(REPO, "build", "websocket-artifacts"))
    ap.add_argument("-k", dest="pattern", default=None, help="run only tests matching this")
    ARGS = ap.parse_args()
    if testbed is not None and os.geteuid() == 0:
        missing = missing_tools()
        if missing:
            print("websocket: skipped: %s not installed (scripts/setup.sh)" % ", ".join(missing),
                  file=sys.stderr)
            return procs.SKIP
    rc = procs.run_suite("websocket", WebSocketEndToEnd, ARGS, testbed is not None)
    if rc == 0 and SCREENSHOTS:
        # run_suite removed the artifacts of a passing run; the screenshots are kept.
        os.makedirs(ARGS.artifacts, exist_ok=True)
        for name, data in SCREENSHOTS.items():
            with open(os.path.join(ARGS.artifacts, name), "wb") as f:
                f.write(data)
        print("websocket: screenshots in %s: %s" % (ARGS.artifacts, ", ".join(sorted(SCREENSHOTS))))
    return rc


if __name__ == "__main__":
    sys.exit(main())
