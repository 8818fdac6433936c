#!/usr/bin/python3
"""mqtt_proxy behind a real HAProxy (PROXY protocol v1 and v2, TLS and client certificates) in the
reference Mininet testbed, with stock mosquitto_pub and mosquitto_sub.

The proxy runs on h1. HAProxy (Debian's, `haproxy -f CFG -db` in the foreground) runs on h4, so
what it forwards crosses the switches (s3, s1, s2) as a client's segments would; clients run on h2
and h3 and reach the proxy only through HAProxy unless a test bypasses it on purpose. The last
case puts HAProxy on h1 beside the proxy, which then captures on lo.

The HAProxy configurations are templates below (HAPROXY_COMMON and HAPROXY_CASES); docs/deployment.md
prints each of them, and test_00 checks that the document and the templates agree, so a reader
copies what the tests run. The CA and the certificates are made at test time (tls.py) in the
artifacts directory.

Each test starts its own proxy and HAProxy and stops them at its end (by PID), so the proxy's log
and the counters it logs when it exits are the test's alone. Exit status 77 (ctest: skipped) when
not root, or when Mininet, Open vSwitch, the Mosquitto clients, haproxy or openssl are missing. On
failure the logs, configurations and certificates stay in the artifacts directory.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import unittest

import procs  # this script's directory is first on sys.path
import tls

try:
    import testbed
except ImportError:  # Mininet imports only in Debian's /usr/bin/python3: main() skips
    testbed = None
else:
    H1, H2, H3, H4 = (testbed.host_ip(i) for i in (1, 2, 3, 4))

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DOC = os.path.join(REPO, "docs", "deployment.md")
ARGS = None

# -- HAProxy configurations ----------------------------------------------------------------------
#
# Each configuration file is HAPROXY_COMMON followed by one of HAPROXY_CASES. Placeholders:
# {proxy} is the address mqtt_proxy serves MQTT on, {certs} the directory holding haproxy.pem
# (server certificate and key) and ca.crt (the CA that signs client certificates). DOC_VALUES are
# what docs/deployment.md shows for them.

HAPROXY_COMMON = """\
global
    log stdout format raw local0 info
    ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 5s
    timeout client 60s
    timeout server 60s
"""

HAPROXY_CASES = {
    # Mutual TLS: only clients with a certificate of the CA get through, and the verified
    # certificate's CN travels to the proxy in the PP2 SSL CN TLV.
    "mtls": """\
frontend mqtts
    bind :8883 ssl crt {certs}/haproxy.pem verify required ca-file {certs}/ca.crt
    default_backend mqtt_proxy

backend mqtt_proxy
    server proxy1 {proxy}:1883 send-proxy-v2-ssl-cn
""",
    # TLS with the client certificate optional: clients without one get through HAProxy, and the
    # proxy decides (--require-certificate).
    "mtls-optional": """\
frontend mqtts
    bind :8883 ssl crt {certs}/haproxy.pem verify optional ca-file {certs}/ca.crt
    default_backend mqtt_proxy

backend mqtt_proxy
    server proxy1 {proxy}:1883 send-proxy-v2-ssl-cn
""",
    # Plain TCP with a v2 header (no SSL TLV: the proxy sees a plain connection). One socket
    # per family; a dual-stack one (v4v6) works too: HAProxy names IPv4 clients ::ffff:a.b.c.d,
    # which the proxy maps back to the IPv4 clients they are.
    "plain-v2": """\
frontend mqtt
    bind :1883
    bind :::1883 v6only
    default_backend mqtt_proxy

backend mqtt_proxy
    server proxy1 {proxy}:1883 send-proxy-v2
""",
    # MQTT over WebSocket with TLS (wss://): HAProxy terminates TLS in front of the WebSocket port;
    # the HTTP Upgrade passes through untouched (docs/websocket.md).
    "wss": """\
frontend mqtt_wss
    bind :8443 ssl crt {certs}/haproxy.pem
    default_backend mqtt_proxy_ws

backend mqtt_proxy_ws
    server proxy1 {proxy}:8080 send-proxy-v2-ssl
""",
    # Plain TCP with the text (v1) header.
    "plain-v1": """\
frontend mqtt
    bind :1883
    bind :::1883 v6only
    default_backend mqtt_proxy

backend mqtt_proxy
    server proxy1 {proxy}:1883 send-proxy
""",
    # Mutual TLS with health checks: each check connects and sends a v2 LOCAL header, which the
    # proxy takes as the balancer's own connection, not a client's.
    "mtls-checks": """\
frontend mqtts
    bind :8883 ssl crt {certs}/haproxy.pem verify required ca-file {certs}/ca.crt
    default_backend mqtt_proxy

backend mqtt_proxy
    option log-health-checks
    server proxy1 {proxy}:1883 send-proxy-v2-ssl-cn check check-send-proxy inter 1s on-marked-down shutdown-sessions
""",
    # HAProxy and mqtt_proxy on one host, as in Mosquitto's same-instance set-up: the proxy
    # captures on lo and HAProxy connects to 127.0.0.1.
    "same-host": """\
frontend mqtts
    bind :8883 ssl crt {certs}/haproxy.pem verify required ca-file {certs}/ca.crt
    default_backend mqtt_proxy

backend mqtt_proxy
    option log-health-checks
    server proxy1 127.0.0.1:1883 send-proxy-v2-ssl-cn check check-send-proxy inter 1s on-marked-down shutdown-sessions
""",
}

# 192.0.2.0/24 is the documentation range (RFC 5737): no reader's real address.
DOC_VALUES = {"proxy": "192.0.2.10", "certs": "/etc/haproxy/mqtt"}

# The CN of the certificate of an authorised client (a user of the password file), and one that
# the CA signed but that is nobody's user.
USER_CN = "sensor-17"
UNKNOWN_CN = "intruder"

# Unique local addresses (RFC 4193) for the IPv6 client and HAProxy's IPv6 socket.
V6_H3, V6_H4 = "fd00:1883::103", "fd00:1883::104"

LO_SYSCTLS = ("net.ipv4.conf.lo.route_localnet", "net.ipv4.conf.lo.accept_local")

# The proxy warns that lo has its offloads on (on a testbed one would turn them off; on a
# real host they serve everything else on lo): true, and no error of the set-up.
LO_WARNINGS = ("lo: offloads on",)

CONNECT_LINE = re.compile(r"CONNECT client=(\S+) id=(\S+) user=(\S*) keepalive=\d+ clean=\S+ "
                          r"version=\d+( tls)?")


def render(name, values):
    """The configuration file of case `name` with the placeholders filled in."""
    return HAPROXY_COMMON + "\n" + HAPROXY_CASES[name].format(**values)


def doc_configs(text):
    """The HAProxy configurations docs/deployment.md prints, by name: each is the fenced block
    right after a `<!-- haproxy:NAME -->` comment ("common" is HAPROXY_COMMON)."""
    found = {}
    for m in re.finditer(r"^<!-- haproxy:([\w-]+) -->\n```[^\n]*\n(.*?)^```$", text,
                         re.MULTILINE | re.DOTALL):
        found.setdefault(m.group(1), []).append(m.group(2))
    return found


class HAProxy:
    """One haproxy process in a Mininet host, in the foreground (-db), its stdout (its log, see
    HAPROXY_COMMON) and stderr (alerts, warnings) in one file. Stopped by PID."""

    def __init__(self, host, config_path, log_path, ports):
        self.host = host
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = host.popen(["haproxy", "-f", config_path, "-db"], stdout=self._log,
                               stderr=subprocess.STDOUT)
        self.ports = ports

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def listening(self):
        p = self.host.popen(["ss", "-Hltn"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            out = p.communicate(timeout=10)[0].decode()
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            return False
        bound = {line.split()[3].rsplit(":", 1)[1] for line in out.splitlines() if line.strip()}
        return all(str(port) in bound for port in self.ports)

    def wait_ready(self, timeout=10):
        ok = procs.wait_for(lambda: self.proc.poll() is not None or self.listening(), timeout,
                            interval=0.05)
        if not ok or self.proc.poll() is not None:
            raise RuntimeError("haproxy on %s did not start:\n%s" % (self.host.name, self.log()))

    def stop(self):
        if self.proc.poll() is None:
            # SIGTERM is HAProxy's hard stop: it closes at once, as the tests want.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class BehindHAProxy(testbed.ProxyChecks if testbed else object, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = tls.Certificates(os.path.join(ARGS.artifacts, "certs"))
        # The names clients dial: h4 (HAProxy in most cases) and h1 (the same-host case).
        cls.certs.server(ips=[H4, H1, "127.0.0.1"])
        cls.user_cert = cls.certs.client("user", USER_CN)
        cls.unknown_cert = cls.certs.client("unknown", UNKNOWN_CN)
        # The password file lists the CN as a user; its password is never asked for, because
        # with --use-identity-as-username the certificate is the credential.
        cls.password_file = os.path.join(ARGS.artifacts, "passwords")
        for i, (user, password) in enumerate(((USER_CN, "unused-1"), ("operator", "unused-2"))):
            subprocess.run(["mosquitto_passwd", "-b"] + (["-c"] if i == 0 else [])
                           + [cls.password_file, user, password], check=True, timeout=30,
                           capture_output=True)
        cls.tb = testbed.Testbed(ARGS.artifacts, proxy_binary=ARGS.proxy)
        cls.tb.start()

    @classmethod
    def tearDownClass(cls):
        cls.tb.stop()

    # -- helpers -------------------------------------------------------------------------------

    def tag(self):
        return self._testMethodName.split("_")[1]

    def start_proxy(self, extra, host="h1", auth=False, suffix=""):
        """The proxy for this test, on `host`; stopped at its end."""
        proxy = self.tb.start_proxy(host, extra=list(extra), auth=auth,
                                    log_suffix="-%s%s" % (self.tag(), suffix))
        self.addCleanup(self.stop_proxy, proxy)
        return proxy

    def start_haproxy(self, name, host="h4", proxy=None, suffix=""):
        """HAProxy on `host` with configuration `name`, forwarding to `proxy` (default h1)."""
        path = os.path.join(ARGS.artifacts, "haproxy-%s-%s%s.cfg" % (self.tag(), name, suffix))
        with open(path, "w") as f:
            f.write(render(name, {"proxy": proxy or H1, "certs": self.certs.dir}))
        text = HAPROXY_CASES[name]
        ports = [8443] if ":8443" in text else [8883] if "ssl" in text else [1883]
        ha = HAProxy(self.tb.host(host), path, path[:-len(".cfg")] + ".log", ports)
        self.addCleanup(ha.stop)
        ha.wait_ready()
        return ha

    def tls_args(self, cert=None, host=H4):
        """mosquitto_pub/sub options for HAProxy's TLS port; `cert` is (crt, key) or None."""
        args = ["-h", host, "-p", "8883", "--cafile", self.certs.ca_crt]
        if cert:
            args += ["--cert", cert[0], "--key", cert[1]]
        return args

    def plain_args(self, host=H4):
        return ["-h", host, "-p", "1883", "-u", testbed.USER, "-P", testbed.PASSWORD]

    def publish(self, host, args, topic, message, client_id, timeout=15):
        """mosquitto_pub; returns (returncode or None if it was still running, output)."""
        rc, out, err = self.tb.run(host, ["mosquitto_pub", "-t", topic, "-m", message,
                                          "-i", client_id] + list(args), timeout=timeout)
        return rc, out + err

    def refused_publish(self, host, args, proxy, reason, client_id, since=0):
        """A mosquitto_pub the proxy refuses before MQTT: the refusal with `reason` is logged,
        the connection closes without a CONNACK, and mosquitto_pub says so and exits non-zero."""
        p = self.tb.popen(host, ["mosquitto_pub", "-t", "pp/refused", "-m", "x",
                                 "-i", client_id] + list(args))
        self.addCleanup(self._end, p)
        needle = "connection refused: " + reason
        self.assertTrue(procs.wait_for(lambda: needle in proxy.log(since), 10),
                        "no %r in:\n%s" % (needle, proxy.log(since)[-3000:]))
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.fail("mosquitto_pub still runs 10 s after the proxy refused it")
        self.assertNotEqual(p.returncode, 0, "mosquitto_pub succeeded although it was refused")
        self.assertIn("connection was lost", (out + err).decode(errors="replace"))
        self.assertNotIn("id=%s" % client_id, proxy.log(since),
                         "a refused connection reached the broker")

    @staticmethod
    def _end(p):
        if p.poll() is None:
            p.kill()
            p.wait()

    def connects(self, proxy, client_id):
        """(client address, user, over TLS) of every CONNECT of `client_id` in the proxy's log."""
        return [(m.group(1), m.group(3), bool(m.group(4)))
                for m in CONNECT_LINE.finditer(proxy.log()) if m.group(2) == client_id]

    def assert_connect(self, proxy, client_id, client_ip, user, tls_used):
        got = self.connects(proxy, client_id)
        self.assertEqual(len(got), 1, "CONNECT lines of %s: %s\n%s"
                         % (client_id, got, proxy.log()[-3000:]))
        address, logged_user, over_tls = got[0]
        self.assertRegex(address, r"^%s:\d+$" % re.escape(client_ip))
        self.assertEqual(logged_user, user)
        self.assertEqual(over_tls, tls_used)

    def subscribe(self, host, args, topic, client_id, proxy, count=1):
        """mosquitto_sub for `count` messages, once the proxy logged its SUBSCRIBE."""
        p = self.tb.popen(host, ["mosquitto_sub", "-t", topic, "-C", str(count), "-W", "20",
                                 "-v", "-i", client_id] + list(args))
        self.addCleanup(self._end, p)
        needle = "id=%s topic=%s" % (client_id, topic)
        if not procs.wait_for(lambda: needle in proxy.log() or p.poll() is not None, 10):
            self.fail("no SUBSCRIBE of %s:\n%s" % (client_id, proxy.log()[-3000:]))
        if p.poll() is not None:
            self.fail("mosquitto_sub ended: %s" % (p.communicate()[1],))
        return p

    def received(self, sub, timeout=20):
        out, err = sub.communicate(timeout=timeout)
        self.assertEqual(sub.returncode, 0, err.decode(errors="replace"))
        return out.decode(errors="replace").splitlines()

    def identity_proxy(self, *more):
        """The proxy of the TLS cases: headers from HAProxy on h4 only, the CN as username."""
        return self.start_proxy(["--proxy-protocol", "v2", "--proxy-protocol-from", H4,
                                 "--use-identity-as-username", "--password-file",
                                 self.password_file] + list(more))

    # -- tests -----------------------------------------------------------------------------------

    def test_00_the_document_prints_the_tested_configurations(self):
        with open(DOC) as f:
            found = doc_configs(f.read())
        expected = {"common": HAPROXY_COMMON}
        expected.update({name: text.format(**DOC_VALUES) for name, text in HAPROXY_CASES.items()})
        self.assertEqual(sorted(found), sorted(expected),
                         "docs/deployment.md's <!-- haproxy:NAME --> blocks")
        for name, text in expected.items():
            self.assertEqual(len(found[name]), 1, "%s is printed %d times" % (name,
                                                                              len(found[name])))
            self.assertEqual(found[name][0], text, "docs/deployment.md's %s configuration" % name)

    def test_01_mutual_tls_cn_is_the_user_and_the_client_keeps_its_address(self):
        self.assertEqual(self.certs.subject_cn(self.user_cert[0]), USER_CN)
        proxy = self.identity_proxy()
        self.start_haproxy("mtls")
        sub = self.subscribe("h2", self.tls_args(self.user_cert), "pp/tls", "pp-sub-01", proxy)
        rc, out = self.publish("h3", self.tls_args(self.user_cert), "pp/tls", "over-tls",
                               "pp-pub-01")
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.received(sub), ["pp/tls over-tls"])
        # The clients' own addresses, not HAProxy's (h4), and the CN as the user.
        self.assert_connect(proxy, "pp-sub-01", H2, USER_CN, True)
        self.assert_connect(proxy, "pp-pub-01", H3, USER_CN, True)
        self.assertNotIn("client=%s:" % H4, proxy.log())
        self.no_errors(proxy)
        counters = self.stop_and_count(proxy)
        self.assertEqual(counters.get("proxy_protocol_headers"), 2, counters)

    def test_02_a_certificate_whose_cn_is_no_user_is_not_authorised(self):
        proxy = self.identity_proxy()
        self.start_haproxy("mtls")
        rc, out = self.publish("h3", self.tls_args(self.unknown_cert), "pp/x", "x", "pp-pub-02")
        self.assertNotIn(rc, (0, None), out)
        self.assertIn("not authori", out.lower())
        self.assertRegex(proxy.log(), r"CONNECT refused client=%s:\d+ id=pp-pub-02 user=\S*: "
                         r"certificate CN %s is not a known user" % (re.escape(H3), UNKNOWN_CN))
        self.assertEqual(self.connects(proxy, "pp-pub-02"), [])

    def test_03_no_certificate_is_refused_with_require_certificate(self):
        proxy = self.identity_proxy("--require-certificate")
        self.start_haproxy("mtls-optional")
        # HAProxy lets it through (verify optional); the header says it presented none.
        self.refused_publish("h3", self.tls_args(None), proxy,
                             "a client certificate is required, and the client presented none",
                             "pp-pub-03a")
        # The same frontend with a certificate: verified, so admitted.
        rc, out = self.publish("h3", self.tls_args(self.user_cert), "pp/opt", "x", "pp-pub-03b")
        self.assertEqual(rc, 0, out)
        self.assert_connect(proxy, "pp-pub-03b", H3, USER_CN, True)
        counters = self.stop_and_count(proxy)
        self.assertGreaterEqual(counters.get("proxy_protocol_insecure", 0), 1, counters)

    def test_04_plain_tcp_is_refused_with_require_tls(self):
        proxy = self.start_proxy(["--proxy-protocol", "v2", "--proxy-protocol-from", H4,
                                  "--proxy-protocol-require-tls"], auth=True)
        self.start_haproxy("plain-v2")
        self.refused_publish("h3", self.plain_args(), proxy,
                             "TLS required, and the header reports a plain connection",
                             "pp-pub-04")
        counters = self.stop_and_count(proxy)
        self.assertGreaterEqual(counters.get("proxy_protocol_insecure", 0), 1, counters)

    def test_05_connections_that_bypass_haproxy_are_refused(self):
        proxy = self.start_proxy(["--proxy-protocol", "v2", "--proxy-protocol-from", H4],
                                 auth=True)
        self.assertNotIn("without --proxy-protocol-from", proxy.log())
        untrusted = "PROXY protocol is on and this address is not a --proxy-protocol-from source"
        # A client straight to the proxy, from a host that is not the balancer.
        self.refused_publish("h2", self.plain_args(H1), proxy, untrusted, "pp-pub-05a")
        # A forged header from there: it would name any address it likes; it is not read.
        since = proxy.log_size()
        forged = ("import socket\n"
                  "s = socket.create_connection(('%s', 1883), timeout=5)\n"
                  "s.sendall(b'PROXY TCP4 10.9.8.7 %s 4242 1883\\r\\n')\n"
                  "s.settimeout(5)\n"
                  "print(repr(s.recv(100)))\n" % (H1, H1))
        rc, out, err = self.tb.run("h2", ["/usr/bin/python3", "-c", forged], timeout=15)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip(), "b''", "the proxy answered a forged header")  # FIN, no data
        self.assertIn("connection refused: " + untrusted, proxy.log(since))
        self.assertNotIn("10.9.8.7", proxy.log())
        # From the balancer's own address, but without a header: MQTT where the header should be.
        self.refused_publish("h4", self.plain_args(H1), proxy, "PROXY header: v2: ", "pp-pub-05b")
        counters = self.stop_and_count(proxy)
        self.assertGreaterEqual(counters.get("proxy_protocol_untrusted", 0), 2, counters)
        self.assertGreaterEqual(counters.get("proxy_protocol_invalid", 0), 1, counters)
        # Without --proxy-protocol-from every source is believed: the proxy says so at start.
        open_proxy = self.start_proxy(["--proxy-protocol", "v2"], auth=True, suffix="-open")
        self.assertRegex(open_proxy.log(), r"WARN .*PROXY protocol on without "
                         r"--proxy-protocol-from: any client that reaches tcp/1883 can claim any "
                         r"address")

    def test_06_v1_headers_and_any_accepting_v1_and_v2(self):
        debug = ["--log-level", "debug"]
        proxy = self.start_proxy(["--proxy-protocol", "v1", "--proxy-protocol-from", H4] + debug,
                                 auth=True)
        ha = self.start_haproxy("plain-v1")
        sub = self.subscribe("h2", self.plain_args(), "pp/v1", "pp-sub-06", proxy)
        rc, out = self.publish("h3", self.plain_args(), "pp/v1", "text-header", "pp-pub-06a")
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.received(sub), ["pp/v1 text-header"])
        self.assert_connect(proxy, "pp-pub-06a", H3, testbed.USER, False)
        self.assert_connect(proxy, "pp-sub-06", H2, testbed.USER, False)
        self.assertIn("PROXY v1 for %s:" % H3, proxy.log())
        ha.stop()
        self.stop_proxy(proxy)

        proxy = self.start_proxy(["--proxy-protocol", "any", "--proxy-protocol-from", H4] + debug,
                                 auth=True, suffix="-any")
        for version, name in (("1", "plain-v1"), ("2", "plain-v2")):
            ha = self.start_haproxy(name, suffix="-any")
            client_id = "pp-pub-06-v" + version
            rc, out = self.publish("h3", self.plain_args(), "pp/any", "v" + version, client_id)
            self.assertEqual(rc, 0, out)
            self.assert_connect(proxy, client_id, H3, testbed.USER, False)
            self.assertIn("PROXY v%s for %s:" % (version, H3), proxy.log())
            ha.stop()
        self.no_errors(proxy)
        counters = self.stop_and_count(proxy)
        self.assertEqual(counters.get("proxy_protocol_headers"), 2, counters)
        self.assertEqual(counters.get("proxy_protocol_invalid", 0), 0, counters)

    def test_07_health_checks_are_not_errors(self):
        # With a certificate required, a LOCAL connection may not speak MQTT (it would bypass
        # TLS): the strictest policy for a health check.
        proxy = self.identity_proxy("--require-certificate", "--log-level", "debug")
        ha = self.start_haproxy("mtls-checks")
        self.assertTrue(procs.wait_for(
            lambda: proxy.log().count("PROXY LOCAL (health check)") >= 2, 10),
            proxy.log()[-3000:])
        rc, out = self.publish("h3", self.tls_args(self.user_cert), "pp/checked", "x",
                               "pp-pub-07")
        self.assertEqual(rc, 0, out)
        self.assert_connect(proxy, "pp-pub-07", H3, USER_CN, True)
        # Checks are logged at debug only; nothing of them at info or above. (Clients are named
        # by their own addresses, so a line at info naming h4 would be about a check.)
        self.assertNotIn("connection refused", proxy.log())
        self.no_errors(proxy)
        self.assertEqual([line for line in proxy.log().splitlines()
                          if " DEBUG " not in line and "%s:" % H4 in line], [])
        # HAProxy logs the client's session when it ends (option tcplog), and every check that
        # fails (option log-health-checks) and the server going down.
        self.assertTrue(procs.wait_for(lambda: "%s:" % H3 in ha.log(), 5), ha.log())
        self.assertNotRegex(ha.log(), r"Health check .* failed|is DOWN|ALERT")
        ha.stop()
        counters = self.stop_and_count(proxy)
        self.assertGreaterEqual(counters.get("proxy_protocol_local", 0), 2, counters)
        for bad in ("proxy_protocol_invalid", "proxy_protocol_insecure", "proxy_protocol_untrusted",
                    "proxy_protocol_timeouts"):
            self.assertEqual(counters.get(bad, 0), 0, counters)

    def test_08_same_host_haproxy_and_capture_on_lo(self):
        # The kernel drops the segments the proxy injects on lo unless these are 1; the proxy
        # sets them itself for -i lo. Starting from 0 shows it does, and that it restores them.
        before = {name: self.sysctl("h1", name) for name in LO_SYSCTLS}
        self.assertEqual(before, {name: "0" for name in LO_SYSCTLS},
                         "h1's lo sysctls are not the kernel's defaults")
        proxy = self.identity_proxy_on_lo()
        self.assertEqual({name: self.sysctl("h1", name) for name in LO_SYSCTLS},
                         {name: "1" for name in LO_SYSCTLS})
        self.start_haproxy("same-host", host="h1", proxy="127.0.0.1")
        sub = self.subscribe("h2", self.tls_args(self.user_cert, host=H1), "pp/lo", "pp-sub-08",
                             proxy)
        rc, out = self.publish("h3", self.tls_args(self.user_cert, host=H1), "pp/lo",
                               "through-lo", "pp-pub-08")
        self.assertEqual(rc, 0, out + proxy.log()[-2000:])
        self.assertEqual(self.received(sub), ["pp/lo through-lo"])
        # Named by the header: the clients on h2 and h3, not HAProxy's 127.0.0.1.
        self.assert_connect(proxy, "pp-sub-08", H2, USER_CN, True)
        self.assert_connect(proxy, "pp-pub-08", H3, USER_CN, True)
        self.assertNotIn("client=127.0.0.1:", proxy.log())
        self.assertNotIn("connection refused", proxy.log())
        self.no_errors(proxy, allowed=LO_WARNINGS)
        self.stop_and_count(proxy)
        self.assertEqual({name: self.sysctl("h1", name) for name in LO_SYSCTLS}, before)

    def test_09_an_ipv6_client_is_named_in_brackets(self):
        for host, address in (("h3", V6_H3), ("h4", V6_H4)):
            self.add_ipv6(host, address)
        proxy = self.start_proxy(["--proxy-protocol", "v2", "--proxy-protocol-from", H4],
                                 auth=True)
        self.start_haproxy("plain-v2")
        rc, out = self.publish("h3", self.plain_args(V6_H4), "pp/v6", "x", "pp-pub-09")
        self.assertEqual(rc, 0, out)
        # HAProxy reaches the proxy over IPv4; the header names the client by its IPv6 address.
        self.assert_connect(proxy, "pp-pub-09", "[%s]" % V6_H3, testbed.USER, False)

    def test_10_wss_through_haproxy_to_the_websocket_port(self):
        """wss://: Paho's websockets transport with TLS to HAProxy on h4, which terminates TLS and
        forwards to the WebSocket port (8080) with a v2 header: the clients keep their addresses
        and are known to have used TLS, so --proxy-protocol-require-tls lets them in."""
        proxy = self.start_proxy(["--proxy-protocol", "v2", "--proxy-protocol-from", H4,
                                  "--proxy-protocol-require-tls"], auth=True)
        self.start_haproxy("wss")
        sub, sub_lines = self.paho_wss("h2", "pp-wss-sub")
        self.command(sub, "sub pp/wss 1")
        self.assertEqual(sub_lines.expect("SUBACK", 15), "SUBACK 1")
        pub, pub_lines = self.paho_wss("h3", "pp-wss-pub")
        self.command(pub, "pub pp/wss 1 over-wss")
        pub_lines.expect("PUBACK", 15)  # QoS 1: the proxy acknowledged it
        self.assertEqual(sub_lines.expect("MSG", 15), "MSG pp/wss 1 0 over-wss")
        for p in (sub, pub):
            self.command(p, "quit")
            self.assertEqual(p.wait(10), 0)
        self.assert_connect(proxy, "pp-wss-sub", H2, testbed.USER, True)
        self.assert_connect(proxy, "pp-wss-pub", H3, testbed.USER, True)
        self.no_errors(proxy)
        counters = self.stop_and_count(proxy)
        self.assertEqual(counters.get("ws_upgrades"), 2, counters)
        self.assertEqual(counters.get("proxy_protocol_headers"), 2, counters)
        self.assertEqual(counters.get("proxy_protocol_insecure", 0), 0, counters)

    def paho_wss(self, host, client_id):
        """mininet/web/paho_ws_client.py to wss://h4:8443/mqtt, connected; (process, lines)."""
        p = self.tb.popen(host, ["/usr/bin/python3", os.path.join(HERE, "web", "paho_ws_client.py"),
                                 "--host", H4, "--port", "8443", "--path", "/mqtt", "--cafile",
                                 self.certs.ca_crt, "--user", testbed.USER, "--password",
                                 testbed.PASSWORD, "--id", client_id, "--version", "5"],
                          stdin=subprocess.PIPE)
        self.addCleanup(lambda: p.poll() is not None or (p.kill(), p.wait()))
        lines = procs.Lines(p.stdout)
        self.assertEqual(lines.next(15), "CONNACK 0", "Paho over wss:// did not connect")
        return p, lines

    @staticmethod
    def command(p, line):
        p.stdin.write((line + "\n").encode())
        p.stdin.flush()

    def add_ipv6(self, host, address):
        """`address`/64 on the host's link (the testbed itself is IPv4 only), removed again at
        the end of the test; IPv6 switched on there first if the host has it off."""
        iface = "%s-eth0" % host
        disabled = "net.ipv6.conf.%s.disable_ipv6" % iface
        if self.sysctl(host, disabled) != "0":
            self.tb.run(host, ["sysctl", "-qw", disabled + "=0"])
            self.addCleanup(self.tb.run, host, ["sysctl", "-qw", disabled + "=1"])
        # nodad: usable at once, not after duplicate address detection's second or so.
        rc, out, err = self.tb.run(host, ["ip", "-6", "addr", "add", address + "/64", "dev", iface,
                                          "nodad"])
        self.assertEqual(rc, 0, out + err)
        self.addCleanup(self.tb.run, host, ["ip", "-6", "addr", "del", address + "/64", "dev",
                                            iface])

    def identity_proxy_on_lo(self):
        return self.start_proxy(["-i", "lo", "--proxy-protocol", "v2", "--proxy-protocol-from",
                                 "127.0.0.1", "--require-certificate",
                                 "--use-identity-as-username", "--password-file",
                                 self.password_file])

    def sysctl(self, host, name):
        rc, out, err = self.tb.run(host, ["sysctl", "-n", name])
        self.assertEqual(rc, 0, err)
        return out.strip()


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", default=os.path.join(REPO, "build", "mqtt_proxy"))
    ap.add_argument("--artifacts", default=os.path.join(REPO, "build", "proxy-protocol-artifacts"))
    ap.add_argument("-k", dest="pattern", default=None, help="run only tests matching this")
    ARGS = ap.parse_args()
    for tool in ("haproxy", "openssl", "mosquitto_passwd"):
        if testbed is not None and os.geteuid() == 0 and shutil.which(tool) is None:
            print("proxy-protocol: skipped: %s is not installed (scripts/setup.sh)" % tool,
                  file=sys.stderr)
            return procs.SKIP
    return procs.run_suite("proxy-protocol", BehindHAProxy, ARGS, testbed is not None)


if __name__ == "__main__":
    sys.exit(main())
